"""The `local` backend: a Hugging Face causal LM run in-process with transformers.

Meant for the demo's tiny models and small setups; big models belong behind `vllm serve`
(the `openai` backend), which batches concurrent requests instead of queueing them.

Options: `path` (the model folder, required), `device` ("cpu"), `dtype` ("float32",
"bfloat16", "auto", ...; default: transformers' default), `idle_timeout` (seconds without a
new token, the wait for the model included, before the answer is given up; default 600).

`SamplingParams.extra` may carry `top_k`; other extras (vLLM's) are ignored here.
"""

from __future__ import annotations

import base64
import io
import json
import os
import secrets
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from queue import Empty
from typing import Any

import torch
from transformers import (
    AutoModelForCausalLM,
    AutoModelForImageTextToText,
    AutoProcessor,
    AutoTokenizer,
    LogitsProcessor,
    LogitsProcessorList,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    StoppingCriteria,
    StoppingCriteriaList,
    TextIteratorStreamer,
)

from workers.backends.base import (
    FAULT_OURS,
    FAULT_VISITOR,
    BackendError,
    Delta,
    Finish,
    Message,
    SamplingParams,
)

DEFAULT_IDLE_TIMEOUT = 600.0
# How often the consumer wakes up to check that the generating thread is still alive.
_POLL_SECONDS = 0.5


@dataclass
class LoadedModel:
    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    eos_ids: frozenset[int]
    pad_id: int | None
    max_positions: int | None
    # One generation at a time per model: on a CPU, two interleaved generations only fight over
    # the same cores, and a shared module is simplest to reason about when it runs alone.
    # Serving many users at once is vLLM's job (continuous batching).
    lock: threading.Lock = field(default_factory=threading.Lock)
    # A vision-language model's processor (images to pixel values, image tokens expanded).
    processor: Any = None

    def encode(self, messages: Sequence[Message]) -> tuple[list[int], dict[str, Any]]:
        """The prompt's token ids and the model's other inputs (a vision model's pixels)."""
        if self.processor is None:
            if any(m.get("images") for m in messages):
                raise BackendError("this model does not take images", fault=FAULT_OURS)
            return self.encode_chat(messages), {}
        pictures = [_image_open(url) for m in messages for url in m.get("images", [])]
        chat = [
            {
                "role": m["role"],
                "content": [
                    *({"type": "image"} for _ in m.get("images", [])),
                    {"type": "text", "text": m["content"]},
                ],
            }
            for m in messages
        ]
        text = self.processor.apply_chat_template(chat, add_generation_prompt=True, tokenize=False)
        batch = self.processor(
            text=text, images=pictures or None, return_tensors="pt", add_special_tokens=False
        )
        extra = {k: v for k, v in batch.items() if k not in ("input_ids", "attention_mask")}
        return list(batch["input_ids"][0].tolist()), extra

    def encode_chat(self, messages: Sequence[Message]) -> list[int]:
        # Render then encode, rather than tokenize=True: transformers 5 returns a BatchEncoding
        # there and 4.x a list. The template writes bos itself, so no special tokens are added.
        text = self.tokenizer.apply_chat_template(
            [dict(m) for m in messages], add_generation_prompt=True, tokenize=False
        )
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])


_models: dict[tuple[str, str, str | None], LoadedModel] = {}
# Held while loading, so that concurrent first calls load a model once, not once per thread.
_models_lock = threading.Lock()
_threads_set = False


def load_model(path: Path, *, device: str = "cpu", dtype: str | None = None) -> LoadedModel:
    """The model and tokenizer in `path`, loaded once per process (per device and dtype)."""
    key = (str(Path(path).resolve()), device, dtype)
    with _models_lock:
        loaded = _models.get(key)
        if loaded is None:
            loaded = _load(Path(key[0]), device=device, dtype=dtype)
            _models[key] = loaded
        return loaded


def _load(path: Path, *, device: str, dtype: str | None) -> LoadedModel:
    global _threads_set
    if not _threads_set and "OMP_NUM_THREADS" not in os.environ:
        # Leave cores for the web process, Redis and the other side's generation; an operator's
        # OMP_NUM_THREADS wins.
        torch.set_num_threads(max(1, (os.cpu_count() or 2) // 2))
        _threads_set = True
    kwargs: dict[str, Any] = {"local_files_only": True}
    if dtype == "auto":
        kwargs["dtype"] = "auto"
    elif dtype is not None:
        torch_dtype = getattr(torch, dtype, None)
        if not isinstance(torch_dtype, torch.dtype):
            raise BackendError(f"unknown dtype {dtype!r} for the local backend", fault=FAULT_OURS)
        kwargs["dtype"] = torch_dtype
    processor = None
    try:
        if _is_vision(path):
            processor = AutoProcessor.from_pretrained(path, local_files_only=True)
            tokenizer = processor.tokenizer
            model = AutoModelForImageTextToText.from_pretrained(path, **kwargs).to(device).eval()
        else:
            tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
            model = AutoModelForCausalLM.from_pretrained(path, **kwargs).to(device).eval()
    except (OSError, ValueError, RuntimeError) as exc:
        raise BackendError(f"cannot load the model in {path}: {exc}") from exc
    if tokenizer.chat_template is None:
        raise BackendError(f"the tokenizer in {path} has no chat template")

    eos = model.generation_config.eos_token_id
    if eos is None:
        eos = tokenizer.eos_token_id
    eos_ids = frozenset([eos] if isinstance(eos, int) else (eos or []))
    pad_id = model.generation_config.pad_token_id
    if pad_id is None:
        pad_id = tokenizer.pad_token_id
    if pad_id is None and eos_ids:
        pad_id = min(eos_ids)
    return LoadedModel(
        model=model,
        tokenizer=tokenizer,
        eos_ids=eos_ids,
        pad_id=pad_id,
        max_positions=getattr(model.config.get_text_config(), "max_position_embeddings", None),
        processor=processor,
    )


def _is_vision(path: Path) -> bool:
    """A vision-language model folder: its config has a vision tower."""
    try:
        return "vision_config" in json.loads((path / "config.json").read_text())
    except (OSError, ValueError):
        return False


def _image_open(url: str) -> Any:
    """The picture of a data: URL (as arena.images stored it, so already checked)."""
    from PIL import Image

    _, _, payload = url.partition(",")
    try:
        image = Image.open(io.BytesIO(base64.b64decode(payload)))
        return image.convert("RGB")
    except (OSError, ValueError) as exc:
        raise BackendError(f"cannot read the prompt's image: {exc}", fault=FAULT_OURS) from exc


class LocalBackend:
    def __init__(self, options: Mapping[str, Any]) -> None:
        raw_path = options.get("path")
        if not raw_path:
            raise BackendError(
                "the local backend needs a 'path' option (a model folder)", fault=FAULT_OURS
            )
        self.path = Path(str(raw_path)).expanduser()
        if not self.path.is_dir():
            raise BackendError(f"model folder {self.path} does not exist")
        if not (self.path / "config.json").is_file():
            raise BackendError(f"{self.path} is not a model folder: it has no config.json")
        self.device = str(options.get("device", "cpu"))
        self.dtype = options.get("dtype")
        self.idle_timeout = float(options.get("idle_timeout", DEFAULT_IDLE_TIMEOUT))

    def stream(
        self, messages: Sequence[Message], params: SamplingParams
    ) -> Iterator[Delta | Finish]:
        loaded = load_model(self.path, device=self.device, dtype=self.dtype)
        return _Generation(loaded, messages, params, idle_timeout=self.idle_timeout).run()


class _Generation:
    """One answer: `generate` runs in a thread, the caller's iterator relays its text."""

    def __init__(
        self,
        loaded: LoadedModel,
        messages: Sequence[Message],
        params: SamplingParams,
        *,
        idle_timeout: float,
    ) -> None:
        if params.max_tokens < 1:
            raise BackendError(
                f"max_tokens must be at least 1, not {params.max_tokens}", fault=FAULT_OURS
            )
        self.loaded = loaded
        self.params = params
        self.idle_timeout = idle_timeout
        self.prompt_ids, self.model_inputs = loaded.encode(messages)
        self.max_new_tokens = params.max_tokens
        if loaded.max_positions is not None:
            room = loaded.max_positions - len(self.prompt_ids)
            if room < 1:
                # The visitor's conversation outgrew the model: not the model's failure.
                raise BackendError(
                    f"the conversation is {len(self.prompt_ids)} tokens; "
                    f"the model's context is {loaded.max_positions}",
                    fault=FAULT_VISITOR,
                )
            self.max_new_tokens = min(self.max_new_tokens, room)
        self.stop = tuple(s for s in params.stop if s)
        self.cancel = threading.Event()
        self.stop_hit = threading.Event()
        self.output_ids: list[int] | None = None
        self.error: BaseException | None = None
        self.streamer = TextIteratorStreamer(
            loaded.tokenizer, skip_prompt=True, timeout=_POLL_SECONDS, skip_special_tokens=True
        )

    def run(self) -> Iterator[Delta | Finish]:
        thread = threading.Thread(target=self._generate, name="local-generate", daemon=True)
        thread.start()
        try:
            yield from self._relay(thread)
            # The streamer ends inside generate(); the thread stores its result just after.
            thread.join(timeout=max(self.idle_timeout, 1.0))
            if thread.is_alive():
                raise BackendError("the local model did not finish after its last token")
            if self.error is not None:
                raise BackendError(f"local generation failed: {self.error!r}") from self.error
            if self.output_ids is None:
                raise BackendError("local generation ended without a result")
            yield Finish(
                prompt_tokens=len(self.prompt_ids),
                completion_tokens=len(self.output_ids),
                finish_reason=self._finish_reason(self.output_ids),
            )
        finally:
            # Also reached when the caller stops iterating early: generation stops at the next
            # token instead of running to max_tokens for nobody.
            self.cancel.set()

    def _relay(self, thread: threading.Thread) -> Iterator[Delta]:
        text = ""  # everything received so far
        sent = 0  # how much of it has been yielded
        stop = self.stop
        last_progress = time.monotonic()
        while True:
            try:
                piece = next(self.streamer)
            except StopIteration:
                break
            except Empty:
                if not thread.is_alive():
                    break  # nothing more can come
                if time.monotonic() - last_progress > self.idle_timeout:
                    raise BackendError(
                        f"the local model produced nothing for {self.idle_timeout:.0f} s"
                    ) from None
                continue
            last_progress = time.monotonic()
            text += piece
            cut = _first_stop(text, stop)
            if cut is not None:
                if cut > sent:
                    yield Delta(text[sent:cut])
                # generate() stops at this token too (_StopOnStrings); drain what remains.
                sent = len(text)
                stop = ()
                continue
            safe = len(text) - _held_back(text, stop)
            if safe > sent:
                yield Delta(text[sent:safe])
                sent = safe
        if sent < len(text):
            # Held back as a possible start of a stop string, and it was not one.
            yield Delta(text[sent:])

    def _generate(self) -> None:
        try:
            with self.loaded.lock:
                if self.cancel.is_set():
                    raise BackendError("cancelled before it started")
                output = self.loaded.model.generate(**self._generate_kwargs())
            self.output_ids = output[0, len(self.prompt_ids) :].tolist()
        except BaseException as exc:
            self.error = exc
            # Unblock the consumer; generate() has not ended the stream (or has, harmlessly).
            self.streamer.end()

    def _generate_kwargs(self) -> dict[str, Any]:
        loaded = self.loaded
        device = loaded.model.device
        input_ids = torch.tensor([self.prompt_ids], device=device)
        processors = LogitsProcessorList()
        if self.params.temperature > 0:
            processors.append(
                _Sampler(
                    temperature=self.params.temperature,
                    top_p=self.params.top_p,
                    top_k=int(self.params.extra.get("top_k") or 0),
                    seed=self.params.seed,
                )
            )
        criteria = StoppingCriteriaList([_StopOnEvent(self.cancel)])
        if self.stop:
            criteria.append(
                _StopOnStrings(loaded.tokenizer, self.stop, len(self.prompt_ids), self.stop_hit)
            )
        return {
            **{k: v.to(device) for k, v in self.model_inputs.items()},
            "input_ids": input_ids,
            "attention_mask": torch.ones_like(input_ids),
            "max_new_tokens": self.max_new_tokens,
            # Sampling is done by _Sampler with its own generator; generate() then just takes
            # the one token left, so seeded answers do not depend on torch's global RNG,
            # which other threads share.
            "do_sample": False,
            "logits_processor": processors,
            "stopping_criteria": criteria,
            "eos_token_id": sorted(loaded.eos_ids),
            "pad_token_id": loaded.pad_id,
            "streamer": self.streamer,
        }

    def _finish_reason(self, output_ids: list[int]) -> str:
        if self.stop_hit.is_set() or (output_ids and output_ids[-1] in self.loaded.eos_ids):
            return "stop"
        if len(output_ids) >= self.max_new_tokens:
            return "length"
        return "stop"


class _Sampler(LogitsProcessor):
    """Temperature, top-k and top-p sampling with a private generator.

    It leaves one finite logit, the chosen token, so greedy decoding picks it.
    """

    def __init__(self, *, temperature: float, top_p: float, top_k: int, seed: int | None) -> None:
        self.temperature = temperature
        self.top_p = top_p
        self.top_k = top_k
        self.generator = torch.Generator(device="cpu")
        self.generator.manual_seed(seed if seed is not None else secrets.randbits(63))

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        logits = scores.float().cpu() / self.temperature
        if 0 < self.top_k < logits.shape[-1]:
            kth = torch.topk(logits, self.top_k, dim=-1).values[..., -1:]
            logits = logits.masked_fill(logits < kth, float("-inf"))
        probs = torch.softmax(logits, dim=-1)
        if self.top_p < 1.0:
            sorted_probs, order = torch.sort(probs, dim=-1, descending=True)
            # Keep the smallest head whose mass reaches top_p (always the top token).
            drop = torch.cumsum(sorted_probs, dim=-1) - sorted_probs >= self.top_p
            drop[..., 0] = False
            sorted_probs = sorted_probs.masked_fill(drop, 0.0)
            probs = torch.zeros_like(probs).scatter(-1, order, sorted_probs)
        chosen = torch.multinomial(probs, 1, generator=self.generator).to(scores.device)
        out = torch.full_like(scores, float("-inf"))
        return out.scatter(-1, chosen, 0.0)


class _StopOnEvent(StoppingCriteria):
    def __init__(self, event: threading.Event) -> None:
        self.event = event

    def __call__(self, input_ids: torch.LongTensor, scores: Any, **kwargs: Any) -> torch.BoolTensor:
        return torch.full(
            (input_ids.shape[0],), self.event.is_set(), dtype=torch.bool, device=input_ids.device
        )


class _StopOnStrings(StoppingCriteria):
    """Stops once the decoded answer contains a stop string; the relay cuts the text there."""

    def __init__(
        self,
        tokenizer: PreTrainedTokenizerBase,
        stop: tuple[str, ...],
        prompt_length: int,
        hit: threading.Event,
    ) -> None:
        self.tokenizer = tokenizer
        self.stop = stop
        self.prompt_length = prompt_length
        self.hit = hit

    def __call__(self, input_ids: torch.LongTensor, scores: Any, **kwargs: Any) -> torch.BoolTensor:
        # Decoding the whole answer each step is quadratic, but answers are short and it sees
        # exactly the text the streamer sees (a token may complete a multi-byte character).
        text = self.tokenizer.decode(
            input_ids[0, self.prompt_length :].tolist(), skip_special_tokens=True
        )
        found = _first_stop(text, self.stop) is not None
        if found:
            self.hit.set()
        return torch.full((input_ids.shape[0],), found, dtype=torch.bool, device=input_ids.device)


def _first_stop(text: str, stop: tuple[str, ...]) -> int | None:
    positions = [i for i in (text.find(s) for s in stop) if i >= 0]
    return min(positions) if positions else None


def _held_back(text: str, stop: tuple[str, ...]) -> int:
    """How many trailing characters of `text` could be the start of a stop string."""
    longest = 0
    for s in stop:
        for n in range(min(len(s) - 1, len(text)), longest, -1):
            if text.endswith(s[:n]):
                longest = n
                break
    return longest
