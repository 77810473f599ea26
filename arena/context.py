"""How long a conversation is for a model, measured before anything is sent to it.

A prompt longer than a model's context fails its generation; before this check such failures
also counted against the model's health, and three long prompts took every demo model out of
the pool. Now a conversation that would not fit a model, with room for its answer (the model's
`max_tokens`), is refused with a 4xx before the battle or turn exists.

The context of a model: the registry's `context_tokens`, else its `[models.vllm]`
`max_model_len`, else (a local model) `max_position_embeddings` in its config.json; a model with
none is not checked. The length: a local model's own tokenizer (tokenizer.json, read with the
`tokenizers` library, cached; no torch in the web process); without a tokenizer, an estimate
from the UTF-8 bytes, on the high side (see `estimate_tokens`).
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from arena.messages import Message, SamplingParams
from arena.models import ArenaModel, Backend

# What a chat template adds around each message (role markers, separators) and before the
# answer; generous for the usual templates (ChatML adds 4-5 per message).
TOKENS_PER_MESSAGE = 8
TOKENS_PRIMING = 8
# Bytes per token assumed without a tokenizer. BPE tokenizers give about 4 bytes of English per
# token and about 3 of Chinese or Japanese (one character); 3 overestimates prose, so a
# conversation refused by the estimate may have fitted, rarely the other way round.
BYTES_PER_TOKEN = 3


def estimate_tokens(text: str) -> int:
    return math.ceil(len(text.encode("utf-8", "surrogatepass")) / BYTES_PER_TOKEN)


@functools.lru_cache(maxsize=64)
def _tokenizer(path: str, mtime: float) -> Any:
    from tokenizers import Tokenizer

    return Tokenizer.from_file(path)


@functools.lru_cache(maxsize=64)
def _config_positions(path: str, mtime: float) -> int | None:
    try:
        value = json.loads(Path(path).read_text(encoding="utf-8")).get("max_position_embeddings")
    except (OSError, ValueError, AttributeError):
        return None
    return value if isinstance(value, int) and value > 0 else None


def _mtime(path: Path) -> float | None:
    try:
        return path.stat().st_mtime
    except OSError:
        return None


def model_context_tokens(model: ArenaModel) -> int | None:
    """The model's context in tokens (prompt and answer together), or None when unknown."""
    options = model.options
    declared = options.get("context_tokens")
    if isinstance(declared, int) and declared > 0:
        return declared
    vllm = options.get("vllm") or {}
    if isinstance(vllm.get("max_model_len"), int):
        return int(vllm["max_model_len"])
    if model.backend == Backend.LOCAL and options.get("path"):
        config = Path(str(options["path"])) / "config.json"
        mtime = _mtime(config)
        if mtime is not None:
            return _config_positions(str(config), mtime)
    return None


def answer_tokens(model: ArenaModel) -> int:
    """The room kept for the answer: the model's max_tokens."""
    value = (model.options.get("sampling") or {}).get("max_tokens")
    return value if isinstance(value, int) and value > 0 else SamplingParams().max_tokens


def conversation_tokens(model: ArenaModel, messages: Sequence[Message]) -> int:
    """How many tokens `messages` take for this model (counted, or estimated on the high side)."""
    count = _counter(model)
    return TOKENS_PRIMING + sum(TOKENS_PER_MESSAGE + count(m["content"]) for m in messages)


def _counter(model: ArenaModel) -> Callable[[str], int]:
    if model.backend == Backend.LOCAL and model.options.get("path"):
        path = Path(str(model.options["path"])) / "tokenizer.json"
        mtime = _mtime(path)
        if mtime is not None:
            try:
                tokenizer = _tokenizer(str(path), mtime)
            except Exception:  # A tokenizer file we cannot read: the estimate will do.
                return estimate_tokens
            return lambda text: len(tokenizer.encode(text, add_special_tokens=False).ids)
    return estimate_tokens


def context_overflow(model: ArenaModel, messages: Sequence[Message]) -> tuple[int, int] | None:
    """(tokens, limit) when the conversation does not fit the model with room for its answer;
    None when it fits or the model's context is unknown."""
    context = model_context_tokens(model)
    if context is None:
        return None
    # Room for the answer, but never more than half the context (a max_tokens as large as the
    # context is a misconfiguration; the backends cut the answer to the room left).
    limit = max(context - answer_tokens(model), context // 2)
    tokens = conversation_tokens(model, messages)
    return (tokens, limit) if tokens > limit else None
