from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import torch

from workers.backends.base import BackendError, Delta, Finish, Message, SamplingParams
from workers.backends.local import LocalBackend, load_model

CHAT: list[Message] = [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "Write a short story about a fox."},
]


@pytest.fixture(scope="module")
def backend(tiny_model_dir: Path) -> LocalBackend:
    return LocalBackend({"path": str(tiny_model_dir)})


def run(
    backend: LocalBackend, messages: Sequence[Message] = CHAT, **params: Any
) -> tuple[list[str], Finish]:
    items = list(backend.stream(messages, SamplingParams(**params)))
    assert isinstance(items[-1], Finish)
    assert all(isinstance(item, Delta) for item in items[:-1])
    return [item.text for item in items[:-1] if isinstance(item, Delta)], items[-1]


def text_of(backend: LocalBackend, **params: Any) -> str:
    return "".join(run(backend, **params)[0])


def test_streams_several_deltas_then_one_finish(backend: LocalBackend) -> None:
    deltas, finish = run(backend, temperature=1.0, max_tokens=40, seed=1)
    assert len(deltas) >= 3
    assert all(deltas)  # no empty pieces
    assert finish.completion_tokens > 0


def test_token_counts_match_the_tokenizer_and_plain_generate(
    backend: LocalBackend, tiny_model_dir: Path
) -> None:
    loaded = load_model(tiny_model_dir)
    tokenizer, model = loaded.tokenizer, loaded.model
    prompt = tokenizer.apply_chat_template(CHAT, add_generation_prompt=True, tokenize=False)
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]

    deltas, finish = run(backend, temperature=0, max_tokens=24)

    input_ids = torch.tensor([prompt_ids])
    expected = model.generate(
        input_ids, attention_mask=torch.ones_like(input_ids), do_sample=False, max_new_tokens=24
    )[0, len(prompt_ids) :]
    assert finish.prompt_tokens == len(prompt_ids)
    assert finish.completion_tokens == len(expected)
    assert "".join(deltas) == tokenizer.decode(expected, skip_special_tokens=True)


def test_max_tokens_ends_with_length(backend: LocalBackend) -> None:
    _, finish = run(backend, temperature=1.0, max_tokens=5, seed=3)
    assert (finish.completion_tokens, finish.finish_reason) == (5, "length")


def test_a_natural_end_is_stop(backend: LocalBackend) -> None:
    # The tiny model says end-of-turn now and then; some seed in a few ends before 200 tokens.
    for seed in range(20):
        _, finish = run(backend, temperature=1.0, max_tokens=200, seed=seed)
        if finish.completion_tokens < 200:
            assert finish.finish_reason == "stop"
            return
    pytest.fail("no answer ended on its own")


def test_stop_string_truncates_and_stops(backend: LocalBackend) -> None:
    full = text_of(backend, temperature=1.0, max_tokens=60, seed=5)
    stop = full[len(full) // 2 : len(full) // 2 + 3]
    assert stop.strip(), "pick a seed whose answer has text in the middle"
    expected = full[: full.find(stop)]

    deltas, finish = run(backend, temperature=1.0, max_tokens=60, seed=5, stop=(stop,))

    assert "".join(deltas) == expected
    assert not any(stop in d for d in deltas)
    assert finish.finish_reason == "stop"
    assert finish.completion_tokens < 60


def test_text_held_back_for_a_stop_string_that_never_completes_is_sent(
    backend: LocalBackend,
) -> None:
    full = text_of(backend, temperature=1.0, max_tokens=60, seed=5)
    # Every prefix of these appears in the answer, the whole never does.
    near_misses = (full[-3:] + "\x00", full[10:14] + "\x00")

    deltas, finish = run(backend, temperature=1.0, max_tokens=60, seed=5, stop=near_misses)

    assert "".join(deltas) == full
    assert finish.finish_reason == "length"


def test_same_seed_same_text_other_seed_other_text(backend: LocalBackend) -> None:
    first = text_of(backend, temperature=1.0, max_tokens=40, seed=42)
    assert text_of(backend, temperature=1.0, max_tokens=40, seed=42) == first
    assert text_of(backend, temperature=1.0, max_tokens=40, seed=43) != first


def test_unseeded_sampling_varies(backend: LocalBackend) -> None:
    texts = {text_of(backend, temperature=1.0, max_tokens=30) for _ in range(3)}
    assert len(texts) > 1


def test_temperature_zero_is_deterministic(backend: LocalBackend) -> None:
    first = text_of(backend, temperature=0, max_tokens=30)
    assert first
    assert text_of(backend, temperature=0, max_tokens=30, seed=1) == first
    # A nucleus of one token is greedy decoding too.
    assert text_of(backend, temperature=1.0, top_p=1e-6, max_tokens=30, seed=9) == first


def test_concurrent_streams_complete_and_do_not_disturb_each_other(
    backend: LocalBackend,
) -> None:
    seeds = [11, 12, 13, 14]
    alone = {seed: text_of(backend, temperature=1.0, max_tokens=50, seed=seed) for seed in seeds}
    together: dict[int, str] = {}
    errors: list[BaseException] = []

    def worker(seed: int) -> None:
        try:
            together[seed] = text_of(backend, temperature=1.0, max_tokens=50, seed=seed)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(seed,)) for seed in seeds]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors
    assert together == alone


def test_abandoned_stream_frees_the_model(backend: LocalBackend) -> None:
    stream = backend.stream(CHAT, SamplingParams(temperature=1.0, max_tokens=2000, seed=1))
    next(stream)
    stream.close()
    started = time.perf_counter()
    _, finish = run(backend, temperature=0, max_tokens=5)
    assert finish.completion_tokens == 5
    # It did not wait for the abandoned 2000 tokens.
    assert time.perf_counter() - started < 2


def test_model_is_loaded_once_per_process(tiny_model_dir: Path) -> None:
    first = LocalBackend({"path": tiny_model_dir})
    second = LocalBackend({"path": str(tiny_model_dir) + "/"})
    list(first.stream(CHAT, SamplingParams(max_tokens=1)))
    list(second.stream(CHAT, SamplingParams(max_tokens=1)))
    assert load_model(tiny_model_dir) is load_model(Path(str(tiny_model_dir) + "/."))


def test_missing_path_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(BackendError, match="needs a 'path'"):
        LocalBackend({})
    with pytest.raises(BackendError, match="does not exist"):
        LocalBackend({"path": tmp_path / "nowhere"})
    with pytest.raises(BackendError, match="not a model folder"):
        LocalBackend({"path": tmp_path})


def test_an_error_inside_generation_is_a_backend_error(
    backend: LocalBackend, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken_forward(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("the accelerator caught fire")

    monkeypatch.setattr(load_model(tiny_model_dir).model, "forward", broken_forward)
    started = time.perf_counter()
    with pytest.raises(BackendError, match="caught fire"):
        list(backend.stream(CHAT, SamplingParams(max_tokens=10)))
    assert time.perf_counter() - started < 5
    monkeypatch.undo()
    # The model's lock was released: the next answer works.
    assert run(backend, temperature=0, max_tokens=3)[1].completion_tokens == 3


def test_bad_parameters_are_backend_errors(backend: LocalBackend) -> None:
    with pytest.raises(BackendError, match="max_tokens"):
        list(backend.stream(CHAT, SamplingParams(max_tokens=0)))
    long_chat: list[Message] = [{"role": "user", "content": "word " * 5000}]
    with pytest.raises(BackendError, match="context"):
        list(backend.stream(long_chat, SamplingParams(max_tokens=10)))


def test_dtype_option(tiny_model_dir: Path) -> None:
    half = LocalBackend({"path": tiny_model_dir, "dtype": "bfloat16"})
    _, finish = run(half, temperature=1.0, max_tokens=8, seed=1)
    assert finish.completion_tokens == 8
    assert load_model(tiny_model_dir, dtype="bfloat16").model.dtype == torch.bfloat16
    with pytest.raises(BackendError, match="unknown dtype"):
        list(
            LocalBackend({"path": tiny_model_dir, "dtype": "float7"}).stream(CHAT, SamplingParams())
        )
