"""The `openai` backend: any OpenAI-compatible chat API, `vllm serve` first of all.

It streams `POST {base_url}/chat/completions` (`stream: true`, `stream_options.include_usage`)
and turns the `chat.completion.chunk` frames into `Delta`s and one `Finish`.

Options (the registry entry's `[models.options]`):

- `base_url` (required): e.g. `http://gpu1:8001/v1`.
- `served_model_name`: the `model` sent to the server. Without it: the name the server serves,
  asked once from `GET {base_url}/models` (a vLLM server serves exactly one).
- `api_key_env`: the name of an environment variable holding the API key (sent as a bearer
  token). The key itself never goes into models.toml or the database.
- `connect_timeout` (default 5 s), `read_timeout` (default 120 s: the longest silence allowed
  between two pieces of the answer, the wait for the first token included).
- `retries` (default 2) and `retry_backoff` (default 0.5 s, doubled each time): how often a request
  is tried again when the server cannot be reached or answers 502/503/504. Only before the first
  token: once a visitor has seen text, a new attempt would give a different answer.

Sampling: temperature, top_p, max_tokens, stop and seed from `SamplingParams`; its `extra`
(vLLM's top_k, min_p, repetition_penalty, ...) is merged into the request body as is.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import orjson

from workers.backends.base import (
    FAULT_MODEL,
    FAULT_OURS,
    FAULT_VISITOR,
    BackendError,
    Delta,
    Finish,
    Message,
    SamplingParams,
)

log = logging.getLogger(__name__)

DEFAULT_CONNECT_TIMEOUT = 5.0
DEFAULT_READ_TIMEOUT = 120.0
DEFAULT_RETRIES = 2
DEFAULT_RETRY_BACKOFF = 0.5
# A Retry-After longer than this is not waited for: the visitor is waiting too.
MAX_RETRY_WAIT = 5.0
RETRY_STATUSES = frozenset({502, 503, 504})
# One pool per base URL, shared by every thread of a worker: each open stream holds a
# connection for the whole answer, so the pool must be at least as large as the number of
# concurrent generations a worker runs (Celery's threads pool concurrency).
MAX_CONNECTIONS = 1024
MAX_KEEPALIVE = 256
# Keys the backend owns; an `extra` that set them would break the protocol, not tune sampling.
PROTOCOL_KEYS = frozenset({"model", "messages", "stream", "stream_options"})
STREAM_CLOSED = "the server closed the stream before the answer ended"
# How much of a non-JSON error body goes into the error message.
MAX_ERROR_TEXT = 500

_clients: dict[str, httpx.Client] = {}
_served_names: dict[str, str] = {}
_clients_lock = threading.Lock()


def http_client(base_url: str) -> httpx.Client:
    """The process's client for `base_url` (created once; httpx clients are thread-safe)."""
    with _clients_lock:
        client = _clients.get(base_url)
        if client is None:
            client = httpx.Client(
                limits=httpx.Limits(
                    max_connections=MAX_CONNECTIONS, max_keepalive_connections=MAX_KEEPALIVE
                ),
                # Every request passes its own timeouts; this only covers stray calls.
                timeout=httpx.Timeout(DEFAULT_READ_TIMEOUT, connect=DEFAULT_CONNECT_TIMEOUT),
                follow_redirects=False,
            )
            _clients[base_url] = client
        return client


def http_clients_close() -> None:
    """Close every pooled connection (tests, and a worker that shuts down)."""
    with _clients_lock:
        for client in _clients.values():
            client.close()
        _clients.clear()
        _served_names.clear()


def _option_float(options: Mapping[str, Any], key: str, default: float) -> float:
    value = options.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise BackendError(
            f"options.{key} must be a positive number, not {value!r}", fault=FAULT_OURS
        )
    return float(value)


class OpenAIBackend:
    def __init__(self, options: Mapping[str, Any]) -> None:
        base_url = options.get("base_url")
        if not isinstance(base_url, str) or not base_url.startswith(("http://", "https://")):
            raise BackendError(
                "the openai backend needs options.base_url (http://host:port/v1), "
                f"not {base_url!r}",
                fault=FAULT_OURS,
            )
        self.base_url = base_url.rstrip("/")
        served = options.get("served_model_name")
        self.served_model_name = str(served) if served else None
        self.headers = {"Accept": "text/event-stream"}
        key_env = options.get("api_key_env")
        if key_env:
            key = os.environ.get(str(key_env))
            if not key:
                raise BackendError(
                    f"the environment variable {key_env} (options.api_key_env) is not set",
                    fault=FAULT_OURS,
                )
            self.headers["Authorization"] = f"Bearer {key}"
        self.connect_timeout = _option_float(options, "connect_timeout", DEFAULT_CONNECT_TIMEOUT)
        self.read_timeout = _option_float(options, "read_timeout", DEFAULT_READ_TIMEOUT)
        self.retry_backoff = _option_float(options, "retry_backoff", DEFAULT_RETRY_BACKOFF)
        retries = options.get("retries", DEFAULT_RETRIES)
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise BackendError(
                f"options.retries must be an integer >= 0, not {retries!r}", fault=FAULT_OURS
            )
        self.retries = retries

    @property
    def timeout(self) -> httpx.Timeout:
        # pool: waiting for a free connection counts as waiting for the server.
        return httpx.Timeout(
            connect=self.connect_timeout,
            read=self.read_timeout,
            write=self.connect_timeout,
            pool=self.read_timeout,
        )

    def stream(
        self, messages: Sequence[Message], params: SamplingParams
    ) -> Iterator[Delta | Finish]:
        body = self.request_body(messages, params)
        return self._stream(body)

    def request_body(self, messages: Sequence[Message], params: SamplingParams) -> dict[str, Any]:
        """The JSON sent to /chat/completions (`model` is filled in when the stream starts)."""
        clash = sorted(PROTOCOL_KEYS & set(params.extra))
        if clash:
            raise BackendError(
                f"sampling.extra may not set {clash[0]!r}: the backend sets it", fault=FAULT_OURS
            )
        body: dict[str, Any] = {
            "model": self.served_model_name,
            "messages": [message_json(m) for m in messages],
            "stream": True,
            "stream_options": {"include_usage": True},
            "temperature": params.temperature,
            "top_p": params.top_p,
            "max_tokens": params.max_tokens,
        }
        if params.stop:
            body["stop"] = list(params.stop)
        if params.seed is not None:
            body["seed"] = params.seed
        body.update(params.extra)
        return body

    def _stream(self, body: dict[str, Any]) -> Iterator[Delta | Finish]:
        if body["model"] is None:
            body = {**body, "model": self._served_name()}
        client = http_client(self.base_url)
        url = f"{self.base_url}/chat/completions"
        attempt = 0
        while True:
            attempt += 1
            retry_wait: float | None = None
            try:
                with client.stream(
                    "POST", url, json=body, headers=self.headers, timeout=self.timeout
                ) as response:
                    if response.status_code == 200:
                        # From here on nothing is retried: a delta may have been yielded.
                        yield from self._relay(response)
                        return
                    message = _error_message(response)
                    error = f"HTTP {response.status_code} from {self.base_url}: {message}"
                    if response.status_code not in RETRY_STATUSES or attempt > self.retries:
                        raise BackendError(
                            _after(error, attempt),
                            fault=status_fault(response.status_code, message),
                        )
                    retry_wait = _retry_after(response)
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                error = f"cannot connect to {self.base_url}: {_describe(exc)}"
                if attempt > self.retries:
                    raise BackendError(_after(error, attempt)) from exc
            except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError) as exc:
                # Raised here only when no response came at all (a pooled connection that the
                # server had just closed, a server that died before answering): nothing was
                # generated for anyone, so it is safe to try again.
                error = f"{self.base_url} closed the connection without answering: {exc}"
                if attempt > self.retries:
                    raise BackendError(_after(error, attempt)) from exc
            except httpx.TimeoutException as exc:
                raise BackendError(self._timeout_message(exc)) from exc
            except httpx.HTTPError as exc:
                raise BackendError(f"request to {self.base_url} failed: {_describe(exc)}") from exc
            wait = self.retry_backoff * 2 ** (attempt - 1)
            if retry_wait is not None:
                wait = max(wait, retry_wait)
            log.warning("%s; trying again in %.1f s (attempt %s)", error, wait, attempt + 1)
            time.sleep(wait)

    def _relay(self, response: httpx.Response) -> Iterator[Delta | Finish]:
        state = _StreamState()
        try:
            for payload in sse_data(response.iter_bytes()):
                if payload == b"[DONE]":
                    state.done = True
                    break
                text = state.feed(_chunk_parse(payload, self.base_url))
                if text:
                    yield Delta(text)
        except httpx.TimeoutException as exc:
            raise BackendError(self._timeout_message(exc)) from exc
        except (httpx.RemoteProtocolError, httpx.ReadError) as exc:
            # The connection dropped mid-answer (server crash, restart, proxy cut). Whatever was
            # yielded stays yielded; the caller stores it as the partial text of a failure.
            if not state.complete:
                raise BackendError(STREAM_CLOSED) from exc
        except httpx.HTTPError as exc:
            raise BackendError(f"reading the answer from {self.base_url}: {exc}") from exc
        yield state.finish()

    def _timeout_message(self, exc: httpx.TimeoutException) -> str:
        if isinstance(exc, httpx.PoolTimeout):
            return (
                f"no free connection to {self.base_url} within {self.read_timeout:g} s "
                "(read_timeout): too many generations at once in this worker"
            )
        if isinstance(exc, httpx.ConnectTimeout):
            return f"cannot connect to {self.base_url} within {self.connect_timeout:g} s"
        return f"no data from {self.base_url} for {self.read_timeout:g} s (read_timeout)"

    def _served_name(self) -> str:
        """The one model the server serves, for entries without served_model_name."""
        name = _served_names.get(self.base_url)
        if name is not None:
            return name
        try:
            response = http_client(self.base_url).get(
                f"{self.base_url}/models", headers=self.headers, timeout=self.timeout
            )
        except httpx.HTTPError as exc:
            raise BackendError(
                f"cannot ask {self.base_url}/models which model it serves: {_describe(exc)}"
            ) from exc
        if response.status_code != 200:
            raise BackendError(
                f"HTTP {response.status_code} from {self.base_url}/models: "
                f"{_error_message(response)}"
            )
        try:
            ids = [str(m["id"]) for m in response.json()["data"]]
        except (ValueError, KeyError, TypeError):
            ids = []
        if len(ids) != 1:
            raise BackendError(
                f"{self.base_url} serves {len(ids)} models ({', '.join(ids) or 'none'}): "
                "set options.served_model_name"
            )
        with _clients_lock:
            _served_names[self.base_url] = ids[0]
        return ids[0]


@dataclass
class _StreamState:
    """What the chunks said so far about how the answer ends."""

    finish_reason: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    # Chunks that carried a token: every content delta after the role's, empty ones included
    # (vLLM holds back the bytes of a split character and sends "" for that token).
    token_chunks: int = 0
    done: bool = False

    @property
    def complete(self) -> bool:
        # vLLM sends finish_reason, then the usage chunk, then [DONE]; a server that ignores
        # include_usage still sends [DONE] after the finish_reason.
        return self.finish_reason is not None and (self.completion_tokens is not None or self.done)

    def feed(self, chunk: dict[str, Any]) -> str:
        usage = chunk.get("usage")
        if isinstance(usage, dict):
            self.prompt_tokens = _int(usage.get("prompt_tokens"))
            self.completion_tokens = _int(usage.get("completion_tokens"))
        choices = chunk.get("choices") or []
        # n is always 1 here; a usage-only chunk has no choices at all.
        choice = next((c for c in choices if isinstance(c, dict) and c.get("index", 0) == 0), None)
        if choice is None:
            return ""
        if choice.get("finish_reason"):
            self.finish_reason = str(choice["finish_reason"])
        delta = choice.get("delta")
        if not isinstance(delta, dict):
            return ""
        text = delta.get("content")
        if not isinstance(text, str):
            return ""
        if "role" not in delta:
            self.token_chunks += 1
        return text

    def finish(self) -> Finish:
        if not self.complete or self.finish_reason is None:
            raise BackendError(STREAM_CLOSED)
        return Finish(
            prompt_tokens=self.prompt_tokens or 0,
            # A server that ignored include_usage: one chunk per token is what vLLM and OpenAI
            # send, so the count of chunks stands in (the prompt's size stays unknown: 0).
            completion_tokens=(
                self.completion_tokens if self.completion_tokens is not None else self.token_chunks
            ),
            finish_reason=self.finish_reason,
        )


def message_json(message: Message) -> dict[str, Any]:
    """One chat message as OpenAI's API takes it. With images, the content is a list of parts,
    the text first and then one `image_url` part per image (a data: URL), which is what vLLM
    serves multimodal models with."""
    images = message.get("images")
    if not images:
        return {"role": message["role"], "content": message["content"]}
    parts: list[dict[str, Any]] = [{"type": "text", "text": message["content"]}]
    parts += [{"type": "image_url", "image_url": {"url": url}} for url in images]
    return {"role": message["role"], "content": parts}


def sse_data(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """The `data` of each Server-Sent Event in a byte stream (comments and other fields skipped).

    Events are cut on the bytes (a blank line ends one), not line by line as text: an answer is
    one event per token, and only a whole event's data is decoded (orjson reads UTF-8 bytes), so
    a chunk that ends inside an event, or inside a character, waits for the rest.
    """
    buffer = b""
    for chunk in chunks:
        if b"\r" in chunk or buffer.endswith(b"\r"):
            # CRLF line ends (a proxy's); joined first, so a pair split across chunks is seen.
            buffer = (buffer + chunk).replace(b"\r\n", b"\n")
        else:
            buffer += chunk
        if b"\n\n" not in buffer:
            continue
        *events, buffer = buffer.split(b"\n\n")
        for event in events:
            data = _event_data(event)
            if data is not None:
                yield data
    # The last event of a body that does not end with a blank line.
    data = _event_data(buffer.rstrip(b"\n"))
    if data is not None:
        yield data


def _event_data(event: bytes) -> bytes | None:
    """The data of one event's lines; None when it has no data field."""
    if event.startswith(b"data: ") and b"\n" not in event:
        return event[6:]  # vLLM's and OpenAI's every event: one data line
    data: list[bytes] = []
    for line in event.split(b"\n"):
        if not line or line.startswith(b":"):
            continue  # a comment: some proxies send these as keep-alives
        field, _, value = line.partition(b":")
        if field == b"data":
            data.append(value[1:] if value.startswith(b" ") else value)
    return b"\n".join(data) if data else None


def _chunk_parse(payload: bytes, base_url: str) -> dict[str, Any]:
    try:
        chunk = orjson.loads(payload)
    except orjson.JSONDecodeError:
        # What orjson refuses and Python's json reads as text decoding did before (bad UTF-8
        # as U+FFFD, NaN, integers past 64 bits), or a frame that is not JSON at all.
        try:
            chunk = json.loads(payload.decode("utf-8", errors="replace"))
        except ValueError:
            raise BackendError(
                f"{base_url} sent a frame that is not JSON: {_shown(payload)}"
            ) from None
    if not isinstance(chunk, dict):
        raise BackendError(f"{base_url} sent a frame that is not an object: {_shown(payload)}")
    # An error after the 200 (vLLM reports failures mid-generation this way).
    if "error" in chunk or chunk.get("object") == "error":
        raise BackendError(f"error from {base_url} during the answer: {_message_of(chunk)}")
    return chunk


def _shown(payload: bytes) -> str:
    return repr(payload[:200].decode("utf-8", errors="replace"))


def _error_message(response: httpx.Response) -> str:
    """The server's own words for a failed request (OpenAI and vLLM: {"error": {"message"}})."""
    try:
        response.read()
    except httpx.HTTPError as exc:
        return f"(the error body could not be read: {_describe(exc)})"
    try:
        body = response.json()
    except ValueError:
        text = response.text.strip()
        return text[:MAX_ERROR_TEXT] or response.reason_phrase or "no message"
    return _message_of(body) if isinstance(body, dict) else str(body)[:MAX_ERROR_TEXT]


def _message_of(body: dict[str, Any]) -> str:
    error = body.get("error", body)
    if isinstance(error, dict):
        for key in ("message", "detail", "msg"):
            if error.get(key):
                return str(error[key])
    elif isinstance(error, str) and error:
        return error
    return json.dumps(body)[:MAX_ERROR_TEXT]


# How servers word a request refused for its length (vLLM: "This model's maximum context length
# is 2048 tokens. However, you requested 2600 tokens ...", OpenAI: "context_length_exceeded").
_TOO_LONG_WORDS = (
    "context length",
    "context_length",
    "maximum context",
    "too long",
    "too many tokens",
)


def status_fault(status: int, message: str) -> str:
    """Whose fault an HTTP error is: a request refused for its length is the visitor's, another
    refused request (400, 413, 422) is ours (we built it), anything else the model's (its server
    is down, overloaded, misconfigured or refuses our key: it cannot answer)."""
    if status in (400, 413, 422):
        lowered = message.lower()
        if status == 413 or any(word in lowered for word in _TOO_LONG_WORDS):
            return FAULT_VISITOR
        return FAULT_OURS
    return FAULT_MODEL


def _retry_after(response: httpx.Response) -> float | None:
    try:
        seconds = float(response.headers.get("retry-after", ""))
    except ValueError:
        return None
    return min(max(seconds, 0.0), MAX_RETRY_WAIT)


def _after(error: str, attempt: int) -> str:
    return error if attempt == 1 else f"{error} ({attempt} attempts)"


def _describe(exc: Exception) -> str:
    return str(exc) or type(exc).__name__


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None
