"""Tiny chat models built on the fly, so the demo and the tests need no download.

Each model is a standard Hugging Face causal LM (Llama or Mistral config, head dim 64 so that
vLLM's CPU attention kernel accepts it) with a byte-level BPE tokenizer trained here. Two kinds:

- Trained (`train_steps > 0`, the demo's models): a few seconds of training on the chat-formatted
  question/answer pairs shipped in `workers/demo_corpus/` (see `workers/tiny_training.py`), so
  that answers read like short English sentences and end with the end-of-sequence token on
  their own. The demo models get different numbers of steps, so they differ in quality.
- Untrained (`train_steps == 0`, the tests' cast): random weights, built in well under a second.
  Their answers are noise, but noise that looks like text fragments: the output head is shaped
  so that tokens come out roughly as often as in the corpus (see `_shape_output_head`), and now
  and then it says end-of-turn, so answers sometimes stop on their own.

A built folder carries its recipe (`arena-tiny.json`); building again with the same recipe
does nothing, so the demo trains once per machine.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import string
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import (
    GenerationConfig,
    LlamaConfig,
    LlamaForCausalLM,
    MistralConfig,
    MistralForCausalLM,
    PreTrainedModel,
    PreTrainedTokenizerFast,
)

from workers.demo_corpus import (
    Pair,
    conversations_split,
    demo_conversations,
    pair_texts,
    pairs_digest,
)
from workers.tiny_tokenizer import (
    BOS,
    DEFAULT_CORPUS,
    EOS,
    MAX_POSITIONS,
    PAD,
    SPECIAL_TOKENS,
    byte_level_alphabet,
    patch_tokenizer_config,
    train_tokenizer,
)
from workers.tiny_training import TrainingRecipe, bits_per_character, model_train

# Bump when the recipe changes, so that folders built by an older recipe are rebuilt.
BUILDER_VERSION = 2
MARKER = "arena-tiny.json"

# Qwen2 is left out on purpose: transformers 5's AutoTokenizer replaces any generic tokenizer of a
# "qwen2" model with its own Qwen2Tokenizer (another pre-tokenizer, an extra <|endoftext|>), so
# the tokenizer trained here would not be the one that loads.
ARCHITECTURES: dict[str, tuple[type[Any], type[PreTrainedModel], dict[str, Any]]] = {
    "llama": (LlamaConfig, LlamaForCausalLM, {}),
    # No sliding window: full attention, as in Llama, which every backend handles.
    "mistral": (MistralConfig, MistralForCausalLM, {"sliding_window": None}),
}


def focused_corpus(texts: tuple[str, ...]) -> tuple[str, ...]:
    """The default corpus with `texts` weighed four times: another tokenizer, another voice."""
    return DEFAULT_CORPUS + texts * 3


@dataclass(frozen=True)
class TinyModelSpec:
    """One demo model: what `build_tiny_chat_model` needs plus what the registry shows."""

    name: str
    display_name: str
    description: str
    seed: int
    architecture: str = "llama"
    hidden_size: int = 128
    intermediate_size: int = 256
    num_layers: int = 2
    num_heads: int = 2
    num_kv_heads: int | None = None
    vocab_size: int = 512
    # None: the training pairs' texts for a trained model, DEFAULT_CORPUS for an untrained one.
    corpus: tuple[str, ...] | None = None
    train_steps: int = 0
    organization: str = "Model Arena demo"
    license: str = "Apache-2.0"


@dataclass(frozen=True)
class BuiltModel:
    name: str
    path: Path
    params: int
    # What the build recorded: training seconds and held-out bits per character (trained only).
    train_seconds: float | None = None
    held_out_bpc: float | None = None
    cached: bool = False


# All have head dim 64 (hidden size / heads): vLLM's CPU attention kernel takes 64, not 16.
# Each is trained for a different number of steps, so that they differ in quality in a known
# order (A best, then the Mistral, then B): a real ranking for real votes to find, and the
# "truth" that `seed_votes` simulates.
DEMO_MODELS: tuple[TinyModelSpec, ...] = (
    TinyModelSpec(
        name="tiny-llama-a",
        display_name="Tiny Llama A",
        description="A two-layer Llama trained for a few seconds (the longest of the three).",
        seed=101,
        train_steps=120,
    ),
    TinyModelSpec(
        name="tiny-llama-b",
        display_name="Tiny Llama B",
        description="A three-layer Llama with grouped-query attention, trained the least.",
        seed=202,
        num_layers=3,
        intermediate_size=384,
        num_kv_heads=1,
        vocab_size=640,
        train_steps=20,
    ),
    TinyModelSpec(
        name="tiny-mistral-a",
        display_name="Tiny Mistral A",
        description="A two-layer Mistral with a wider MLP, trained for a middling number of steps.",
        seed=303,
        architecture="mistral",
        intermediate_size=320,
        vocab_size=576,
        train_steps=50,
    ),
)

# Weight initialisation draws from torch's global generator: builds must not interleave.
_build_lock = threading.Lock()


def build_tiny_chat_model(
    path: Path,
    *,
    seed: int,
    hidden_size: int = 128,
    intermediate_size: int = 256,
    num_layers: int = 2,
    num_heads: int = 2,
    num_kv_heads: int | None = None,
    vocab_size: int = 512,
    corpus: Sequence[str] | None = None,
    architecture: str = "llama",
    train_steps: int = 0,
    conversations: Sequence[Pair] | None = None,
) -> Path:
    """Build a chat model into `path`, or do nothing if one of the same recipe is there.

    Parameters
    ----------
    path
        The model folder. It is created; if it exists it must be empty or hold a model built
        here (its `arena-tiny.json` marker), never someone else's files.
    seed
        Seeds the weights and the training data order; the tokenizer depends only on `corpus`
        and `vocab_size`.
    hidden_size, intermediate_size, num_layers, num_heads, num_kv_heads
        The shape; `hidden_size / num_heads` is the head dim, which vLLM on CPU wants at 64.
    vocab_size
        The BPE vocabulary size (an upper bound: a small corpus may yield fewer tokens; the
        model's embedding keeps the full size).
    corpus
        Training text for the tokenizer (and, untrained, the output head's token frequencies).
        Default: the texts of `conversations` when trained, `DEFAULT_CORPUS` when not.
    architecture
        "llama" or "mistral".
    train_steps
        0: random weights, built in well under a second. More: trained for that many steps
        on chat samples of `conversations` (see `workers.tiny_training.model_train`).
    conversations
        The question/answer pairs to train on; default: the training part of the shipped demo
        corpus (`workers/demo_corpus/conversations.txt`).

    Returns
    -------
    Path
        `path`, loadable offline with `AutoModelForCausalLM` and `AutoTokenizer`.

    Raises
    ------
    ValueError
        On an unknown architecture, a shape that does not divide, or a foreign `path`.
    """
    if architecture not in ARCHITECTURES:
        raise ValueError(
            f"unknown architecture {architecture!r}; choose from {list(ARCHITECTURES)}"
        )
    if hidden_size % num_heads:
        raise ValueError(f"hidden_size {hidden_size} is not a multiple of num_heads {num_heads}")
    kv_heads = num_kv_heads or num_heads
    if num_heads % kv_heads:
        raise ValueError(f"num_heads {num_heads} is not a multiple of num_kv_heads {kv_heads}")
    if train_steps < 0:
        raise ValueError(f"train_steps must not be negative, not {train_steps}")
    pairs: tuple[Pair, ...] = ()
    if train_steps:
        pairs = (
            tuple(conversations)
            if conversations is not None
            else conversations_split(demo_conversations())[0]
        )
        if not pairs:
            raise ValueError("conversations is empty")
    if corpus is not None:
        texts = tuple(corpus)
    else:
        texts = pair_texts(pairs) if train_steps else DEFAULT_CORPUS
    if not texts:
        raise ValueError("corpus is empty")

    path = Path(path)
    recipe: dict[str, Any] = {
        "builder_version": BUILDER_VERSION,
        "architecture": architecture,
        "seed": seed,
        "hidden_size": hidden_size,
        "intermediate_size": intermediate_size,
        "num_layers": num_layers,
        "num_heads": num_heads,
        "num_kv_heads": kv_heads,
        "vocab_size": vocab_size,
        # The corpus itself may be long; its digest is enough to tell two apart.
        "corpus_sha256": _digest(texts),
        "training": None,
    }
    training = TrainingRecipe(steps=train_steps) if train_steps else None
    if training is not None:
        recipe["training"] = {**training.as_dict(), "pairs_sha256": pairs_digest(pairs)}
    if _read_marker(path) == recipe:
        return path
    if path.exists() and any(path.iterdir()) and _read_marker(path) is None:
        raise ValueError(f"{path} is not empty and was not built by build_tiny_chat_model")

    path.parent.mkdir(parents=True, exist_ok=True)
    # Build beside the target and swap it in, so a reader never sees half a model and two
    # processes building the same folder at once both end with a whole one.
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    staging.chmod(0o755)  # mkdtemp's 0700 would hide the model from a worker run as another user
    try:
        report = _build_into(
            staging,
            seed=seed,
            architecture=architecture,
            hidden_size=hidden_size,
            intermediate_size=intermediate_size,
            num_layers=num_layers,
            num_heads=num_heads,
            num_kv_heads=kv_heads,
            vocab_size=vocab_size,
            corpus=texts,
            training=training,
            pairs=pairs,
            # Held-out text is only held out from the shipped corpus's own training part.
            held_out=conversations_split(demo_conversations())[1] if conversations is None else (),
        )
        marker = {**recipe, "recipe_sha256": _recipe_hash(recipe), **report}
        (staging / MARKER).write_text(json.dumps(marker, indent=2) + "\n")
        if path.exists():
            shutil.rmtree(path)
        try:
            staging.rename(path)
        except OSError:
            # Another process swapped in its build first; it is the same model.
            if _read_marker(path) != recipe:
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return path


def build_demo_models(data_dir: Path) -> list[BuiltModel]:
    """Build every model of `DEMO_MODELS` under `data_dir/models/<name>`; a model whose folder
    already holds the same recipe is kept as it is (not retrained)."""
    built = []
    for spec in DEMO_MODELS:
        path = Path(data_dir) / "models" / spec.name
        before = _read_marker(path, with_report=True)
        build_tiny_chat_model(
            path,
            seed=spec.seed,
            hidden_size=spec.hidden_size,
            intermediate_size=spec.intermediate_size,
            num_layers=spec.num_layers,
            num_heads=spec.num_heads,
            num_kv_heads=spec.num_kv_heads,
            vocab_size=spec.vocab_size,
            corpus=spec.corpus,
            architecture=spec.architecture,
            train_steps=spec.train_steps,
        )
        marker = _read_marker(path, with_report=True) or {}
        built.append(
            BuiltModel(
                name=spec.name,
                path=path,
                params=int(marker["params"]),
                train_seconds=marker.get("train_seconds"),
                held_out_bpc=marker.get("held_out_bpc"),
                cached=before == marker,
            )
        )
    return built


def model_param_count(path: Path) -> int:
    """The parameter count recorded when `path` was built."""
    marker = _read_marker(path, with_report=True)
    if marker is None:
        raise ValueError(f"{path} holds no model built by build_tiny_chat_model")
    return int(marker["params"])


def demo_model_spec(name: str) -> TinyModelSpec:
    for spec in DEMO_MODELS:
        if spec.name == name:
            return spec
    raise KeyError(name)


def _build_into(
    folder: Path,
    *,
    seed: int,
    architecture: str,
    hidden_size: int,
    intermediate_size: int,
    num_layers: int,
    num_heads: int,
    num_kv_heads: int,
    vocab_size: int,
    corpus: Sequence[str],
    training: TrainingRecipe | None,
    pairs: Sequence[Pair],
    held_out: Sequence[Pair],
) -> dict[str, Any]:
    """Build the model into `folder`; returns the build report kept in its marker."""
    tokenizer = train_tokenizer(corpus, vocab_size)
    ids = {token: tokenizer.convert_tokens_to_ids(token) for token in (BOS, EOS, PAD)}
    config_class, model_class, extra = ARCHITECTURES[architecture]
    config = config_class(
        **extra,
        vocab_size=max(vocab_size, len(tokenizer)),
        hidden_size=hidden_size,
        intermediate_size=intermediate_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_kv_heads,
        max_position_embeddings=MAX_POSITIONS,
        tie_word_embeddings=False,
        bos_token_id=ids[BOS],
        eos_token_id=ids[EOS],
        pad_token_id=ids[PAD],
    )
    report: dict[str, Any] = {}
    # fork_rng leaves the caller's global random state as it was.
    with _build_lock, torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = model_class(config).eval()
        if training is None:
            _shape_output_head(model, tokenizer, corpus)
        else:
            started = time.perf_counter()
            losses = model_train(model, tokenizer, pairs, training, seed=seed)
            report["train_seconds"] = round(time.perf_counter() - started, 2)
            report["final_loss"] = round(sum(losses[-10:]) / len(losses[-10:]), 4)
            if held_out:
                bpc = bits_per_character(model, tokenizer, held_out)
                report["held_out_bpc"] = round(bpc, 4)
    model.generation_config = GenerationConfig(
        bos_token_id=ids[BOS], eos_token_id=ids[EOS], pad_token_id=ids[PAD]
    )
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    patch_tokenizer_config(folder)
    report["params"] = sum(p.numel() for p in model.parameters())
    return report


@torch.no_grad()
def _shape_output_head(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerFast, corpus: Sequence[str]
) -> None:
    """Make the random model emit corpus-like tokens instead of uniform noise over bytes.

    A uniform pick over a byte-level vocabulary is half invalid UTF-8. So hidden dimension 0
    becomes a constant: every embedding holds the same value there, the blocks neither read it
    (their input norms weigh it 0) nor write it (row 0 of their output projections is 0), and
    after the final norm it is a near-constant that column 0 of the output head turns into a
    per-token bias equal to the token's log-frequency in the corpus. The other columns stay
    random and context-dependent, rescaled so that they move logits by about one nat.
    """
    inner = model.base_model
    embed = model.get_input_embeddings().weight
    head = model.get_output_embeddings().weight
    embed[:, 0] = 1.0
    for layer in inner.layers:
        layer.input_layernorm.weight[0] = 0.0
        layer.post_attention_layernorm.weight[0] = 0.0
        layer.self_attn.o_proj.weight[0, :] = 0.0
        layer.mlp.down_proj.weight[0, :] = 0.0

    log_freq = _token_log_frequencies(tokenizer, corpus, head.shape[0])
    encoded = [tokenizer(text, add_special_tokens=False)["input_ids"] for text in corpus]
    batch = torch.tensor([_cycle(ids, 64) for ids in encoded])
    hidden = inner(input_ids=batch).last_hidden_state.reshape(-1, head.shape[1])
    context_logits = hidden[:, 1:] @ head[:, 1:].T
    head[:, 1:] *= 1.0 / context_logits.std()
    head[:, 0] = log_freq / hidden[:, 0].mean()


def _token_log_frequencies(
    tokenizer: PreTrainedTokenizerFast, corpus: Sequence[str], rows: int
) -> torch.Tensor:
    counts: Counter[int] = Counter()
    for text in corpus:
        counts.update(tokenizer(text, add_special_tokens=False)["input_ids"])
    total = sum(counts.values())
    # Unseen but harmless tokens (printable ASCII bytes, rare merges) stay possible; raw
    # non-ASCII bytes, unused rows and markup tokens other than eos are effectively banned.
    printable = {ord(c) for c in string.printable}
    byte_of = {char: byte for byte, char in enumerate(byte_level_alphabet())}
    log_freq = torch.full((rows,), -30.0)
    for token, index in tokenizer.get_vocab().items():
        if token in SPECIAL_TOKENS:
            continue
        if len(token) == 1 and byte_of.get(token) not in printable and counts[index] == 0:
            continue
        # Longer tokens get a boost, so that output reads more like words than letters.
        log_freq[index] = math.log((counts[index] + 0.5) / total) + 0.3 * (len(token) - 1)
    # An answer ends on its own after a hundred-odd tokens, on average.
    log_freq[tokenizer.convert_tokens_to_ids(EOS)] = math.log(1 / 150)
    return log_freq


def _cycle(ids: list[int], length: int) -> list[int]:
    return [ids[i % len(ids)] for i in range(length)]


def _digest(texts: Sequence[str]) -> str:
    digest = hashlib.sha256()
    for text in texts:
        digest.update(text.encode())
        digest.update(b"\0")
    return digest.hexdigest()


# What a marker records about the build besides its recipe (not compared when checking it).
_REPORT_KEYS = ("params", "recipe_sha256", "train_seconds", "final_loss", "held_out_bpc")


def _recipe_hash(recipe: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()


def _read_marker(path: Path, *, with_report: bool = False) -> dict[str, Any] | None:
    try:
        marker = json.loads((Path(path) / MARKER).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(marker, dict):
        return None
    if not with_report:
        for key in _REPORT_KEYS:
            marker.pop(key, None)
    return marker
