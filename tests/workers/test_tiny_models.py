from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from tokenizers import Tokenizer
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

from workers.tiny_models import (
    DEMO_MODELS,
    BuiltModel,
    build_demo_models,
    build_tiny_chat_model,
)

SAMPLE = 'Hello, wörld! def f(x):\n    return x * 42  # 🙂 "quoted"'
CHAT = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "What is the capital of France?"},
]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> list[BuiltModel]:
    return build_demo_models(tmp_path_factory.mktemp("data"))


def weights(path: Path) -> dict[str, torch.Tensor]:
    return load_file(path / "model.safetensors")


def test_demo_specs_are_distinct_and_complete() -> None:
    assert len(DEMO_MODELS) >= 3
    assert len({spec.name for spec in DEMO_MODELS}) == len(DEMO_MODELS)
    assert len({spec.seed for spec in DEMO_MODELS}) == len(DEMO_MODELS)
    assert len({spec.architecture for spec in DEMO_MODELS}) >= 2
    for spec in DEMO_MODELS:
        assert spec.display_name and spec.description
        assert spec.organization == "Model Arena demo"
        assert spec.license == "Apache-2.0"
        assert spec.hidden_size // spec.num_heads == 64  # what vLLM's CPU kernel accepts


def test_build_demo_models_is_fast(tmp_path: Path) -> None:
    started = time.perf_counter()
    built = build_demo_models(tmp_path)
    assert time.perf_counter() - started < 10
    assert [b.name for b in built] == [spec.name for spec in DEMO_MODELS]
    for b in built:
        assert b.path == tmp_path / "models" / b.name


def test_demo_models_have_a_few_hundred_thousand_params(demo: list[BuiltModel]) -> None:
    for built in demo:
        model = AutoModelForCausalLM.from_pretrained(built.path, local_files_only=True)
        assert built.params == sum(p.numel() for p in model.parameters())
        assert 200_000 < built.params < 1_000_000


def test_demo_models_load_offline_with_their_own_tokenizer(demo: list[BuiltModel]) -> None:
    for built in demo:
        tokenizer = AutoTokenizer.from_pretrained(built.path, local_files_only=True)
        trained = Tokenizer.from_file(str(built.path / "tokenizer.json"))
        # AutoTokenizer must not swap in an architecture's stock tokenizer class.
        ids = tokenizer(SAMPLE, add_special_tokens=False)["input_ids"]
        assert ids == trained.encode(SAMPLE, add_special_tokens=False).ids
        assert tokenizer.decode(ids) == SAMPLE
        config = AutoConfig.from_pretrained(built.path, local_files_only=True)
        assert len(tokenizer) <= config.vocab_size


def test_chat_template_ends_with_the_assistant_turn(demo: list[BuiltModel]) -> None:
    tokenizer = AutoTokenizer.from_pretrained(demo[0].path, local_files_only=True)
    text = tokenizer.apply_chat_template(CHAT, add_generation_prompt=True, tokenize=False)
    assert text == (
        "<s><|system|>\nBe brief.</s>\n"
        "<|user|>\nWhat is the capital of France?</s>\n"
        "<|assistant|>\n"
    )
    without = tokenizer.apply_chat_template(CHAT, add_generation_prompt=False, tokenize=False)
    assert not without.endswith("<|assistant|>\n")
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    for token in ("<s>", "</s>", "<|system|>", "<|user|>", "<|assistant|>"):
        assert tokenizer.convert_tokens_to_ids(token) in ids  # one token each, not split


def test_demo_models_differ_in_weights_and_tokenizers(demo: list[BuiltModel]) -> None:
    heads = [weights(b.path)["lm_head.weight"] for b in demo]
    for i, a in enumerate(heads):
        for b in heads[i + 1 :]:
            assert a.shape != b.shape or not torch.equal(a, b)
    encodings = {
        tuple(AutoTokenizer.from_pretrained(b.path, local_files_only=True)(SAMPLE)["input_ids"])
        for b in demo
    }
    assert len(encodings) == len(demo)


def test_same_seed_gives_the_same_weights(tmp_path: Path) -> None:
    first = build_tiny_chat_model(tmp_path / "one", seed=11)
    second = build_tiny_chat_model(tmp_path / "two", seed=11)
    third = build_tiny_chat_model(tmp_path / "three", seed=12)
    a, b, c = weights(first), weights(second), weights(third)
    assert all(torch.equal(a[name], b[name]) for name in a)
    assert not torch.equal(
        a["model.layers.0.self_attn.q_proj.weight"], c["model.layers.0.self_attn.q_proj.weight"]
    )


def test_rebuild_with_the_same_parameters_does_nothing(tmp_path: Path) -> None:
    path = build_tiny_chat_model(tmp_path / "m", seed=1)
    stamp = (path / "model.safetensors").stat().st_mtime_ns
    assert build_tiny_chat_model(tmp_path / "m", seed=1) == path
    assert (path / "model.safetensors").stat().st_mtime_ns == stamp


def test_rebuild_with_other_parameters_replaces_the_model(tmp_path: Path) -> None:
    path = build_tiny_chat_model(tmp_path / "m", seed=1)
    build_tiny_chat_model(path, seed=2, num_layers=3)
    marker = json.loads((path / "arena-tiny.json").read_text())
    assert (marker["seed"], marker["num_layers"]) == (2, 3)
    assert AutoConfig.from_pretrained(path, local_files_only=True).num_hidden_layers == 3
    # No staging folders are left behind.
    assert [p.name for p in tmp_path.iterdir()] == ["m"]


def test_refuses_to_overwrite_a_foreign_folder(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="not built by"):
        build_tiny_chat_model(tmp_path, seed=1)
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_rejects_unknown_architecture_and_bad_shapes(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="architecture"):
        build_tiny_chat_model(tmp_path / "a", seed=1, architecture="gpt5")
    with pytest.raises(ValueError, match="multiple"):
        build_tiny_chat_model(tmp_path / "b", seed=1, hidden_size=100, num_heads=3)


def test_config_is_plain_enough_for_vllm(demo: list[BuiltModel]) -> None:
    for built in demo:
        config = json.loads((built.path / "config.json").read_text())
        assert config["hidden_size"] // config["num_attention_heads"] == 64
        assert config["architectures"][0] in {"LlamaForCausalLM", "MistralForCausalLM"}
        tokenizer_config = json.loads((built.path / "tokenizer_config.json").read_text())
        # Resolvable by transformers 4.x too (vLLM's environment may have it).
        assert tokenizer_config["tokenizer_class"] == "PreTrainedTokenizerFast"
        assert tokenizer_config["chat_template"]


def test_sampled_output_reads_like_text_fragments(demo: list[BuiltModel]) -> None:
    for built in demo:
        tokenizer = AutoTokenizer.from_pretrained(built.path, local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(built.path, local_files_only=True)
        text = tokenizer.apply_chat_template(CHAT, add_generation_prompt=True, tokenize=False)
        ids = tokenizer(text, add_special_tokens=False, return_tensors="pt")["input_ids"]
        torch.manual_seed(0)
        out = model.generate(
            ids,
            attention_mask=torch.ones_like(ids),
            do_sample=True,
            max_new_tokens=80,
            min_new_tokens=80,
        )
        answer = tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True)
        assert len(answer) > 80
        assert "\ufffd" not in answer  # no stray raw bytes
        letters = sum(c.isalpha() or c.isspace() for c in answer)
        assert letters / len(answer) > 0.6
