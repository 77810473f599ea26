"""The JSON API of battles and their Server-Sent Events stream.

The arena page's script uses exactly these endpoints, so anything a visitor can do, a script
can do too (with the session cookie and the CSRF token from `GET /`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from functools import wraps
from typing import Any

import orjson
import redis
import redis.asyncio as aioredis
from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import close_old_connections
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.views.decorators.http import require_GET

from arena import images, selectors, services, streams
from arena.errors import ArenaError, InvalidInput, RateLimited
from arena.models import Battle, Response, ResponseStatus
from arena.visitors import ip_hash, visitor_id

View = Callable[..., HttpResponse]
AsyncView = Callable[..., Awaitable[HttpResponse]]


def error_response(error: ArenaError) -> JsonResponse:
    reply = JsonResponse({"error": error.message}, status=error.status)
    if isinstance(error, RateLimited):
        reply["Retry-After"] = str(error.retry_after)
    return reply


@functools.cache
def _api_executor() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(settings.ARENA_API_THREADS, thread_name_prefix="arena-api")


def off_loop(function: Callable[..., Any]) -> Callable[..., Awaitable[Any]]:
    """Run short sync domain code (database, Redis) for an async view on the API's thread pool.

    Under ASGI a sync view runs on Django's single thread-sensitive thread, shared by every
    request of the process: at 50 battles a second the requests queue behind one another there.
    The pool's threads each keep a database connection, checked and recycled around every call
    as Django does around a request. With ARENA_API_THREADS=0 the code runs on that one thread,
    like a sync view (the in-process test client needs it: it shares the test's transaction).
    """

    def call(*args: Any, **kwargs: Any) -> Any:
        close_old_connections()
        try:
            return function(*args, **kwargs)
        finally:
            close_old_connections()

    async def run(*args: Any, **kwargs: Any) -> Any:
        if settings.ARENA_API_THREADS == 0:
            return await sync_to_async(function, thread_sensitive=True)(*args, **kwargs)
        return await sync_to_async(call, thread_sensitive=False, executor=_api_executor())(
            *args, **kwargs
        )

    return run


def json_api(*, methods: tuple[str, ...]) -> Callable[[View], AsyncView]:
    """Allow `methods`, run the view off the event loop (see `off_loop`), and turn domain
    errors into 4xx replies that carry the message."""

    def decorate(view: View) -> AsyncView:
        run = off_loop(view)

        @wraps(view)
        async def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if request.method not in methods:
                reply = JsonResponse(
                    {"error": f"Use {' or '.join(methods)} here, not {request.method}."},
                    status=405,
                )
                reply["Allow"] = ", ".join(methods)
                return reply
            try:
                response: HttpResponse = await run(request, *args, **kwargs)
            except ArenaError as error:
                return error_response(error)
            return response

        return wrapper

    return decorate


# The API's bodies are flat objects; deeper nesting is refused before any code walks it (a repr
# of a 1,000-deep list would exceed Python's recursion limit).
MAX_BODY_DEPTH = 32


def _body(request: HttpRequest) -> dict[str, Any]:
    """The request's fields, from a JSON object or a form; 400 with the reason for anything
    that cannot be stored as it is.

    orjson, not the json module: it refuses invalid UTF-8 and lone surrogates (`"\\ud800"`),
    which no database can store, refuses NaN and numbers that overflow a double (the json
    module raises ValueError on an integer of more than 4,300 digits), and stops at 1,024
    levels of nesting where the json module exceeds the recursion limit.
    """
    if request.content_type == "application/json":
        try:
            data = orjson.loads(request.body or b"{}")
        except orjson.JSONDecodeError as exc:
            raise InvalidInput(f"The request body is not valid JSON: {exc}.") from None
        if not isinstance(data, dict):
            raise InvalidInput("The request body must be a JSON object.")
    else:
        data = request.POST.dict()
    _text_check(data)
    return data


def _text_check(data: dict[str, Any]) -> None:
    """Refuse nesting past MAX_BODY_DEPTH and text with NUL, which PostgreSQL cannot store."""
    pending: list[tuple[object, int]] = [(data, 1)]
    while pending:
        value, depth = pending.pop()
        if isinstance(value, str):
            if "\x00" in value:
                raise InvalidInput(
                    "The request contains a NUL character (\\u0000), which cannot be stored: "
                    "remove it and send again."
                )
        elif isinstance(value, dict | list):
            if depth > MAX_BODY_DEPTH:
                raise InvalidInput(
                    f"The request body is nested too deeply: at most {MAX_BODY_DEPTH} levels."
                )
            items = [*value.keys(), *value.values()] if isinstance(value, dict) else value
            pending.extend((item, depth + 1) for item in items)


def _battle(request: HttpRequest, battle_id: str) -> Battle:
    return selectors.battle_get(battle_id=battle_id, visitor_id=visitor_id(request))


@json_api(methods=("POST",))
def battles_create(request: HttpRequest) -> HttpResponse:
    body = _body(request)
    prompt = services.prompt_clean(body.get("prompt"))
    image = images.image_upload(body, request.FILES)
    battle = services.battle_create(
        visitor_id=visitor_id(request), ip_hash=ip_hash(request), prompt=prompt, image=image
    )
    if image is not None:  # a vision battle's reply names its stored image: read it back
        return JsonResponse(selectors.battle_state(battle), status=201)
    # What was just written is known: reading it back cost three queries per battle start.
    return JsonResponse(selectors.battle_state_started(battle, prompt=prompt), status=201)


@json_api(methods=("GET",))
def battle_image(request: HttpRequest, battle_id: str, index: int) -> HttpResponse:
    """A turn's image, to the battle's own visitor only (a stranger gets the same 404 or 403
    as for the battle itself)."""
    image = images.turn_image(battle=_battle(request, battle_id), index=index)
    reply = HttpResponse(bytes(image.data), content_type=image.mime)
    reply["Cache-Control"] = "private, max-age=3600"
    reply["X-Content-Type-Options"] = "nosniff"
    return reply


@json_api(methods=("GET",))
def battle_detail(request: HttpRequest, battle_id: str) -> HttpResponse:
    return JsonResponse(selectors.battle_state(_battle(request, battle_id)))


@json_api(methods=("POST",))
def battle_continue(request: HttpRequest, battle_id: str) -> HttpResponse:
    battle = _battle(request, battle_id)
    services.battle_continue(
        battle=battle, visitor_id=visitor_id(request), prompt=_body(request).get("prompt")
    )
    return JsonResponse(selectors.battle_state(battle), status=201)


@json_api(methods=("POST",))
def battle_regenerate(request: HttpRequest, battle_id: str) -> HttpResponse:
    battle = _battle(request, battle_id)
    services.battle_regenerate(battle=battle, visitor_id=visitor_id(request))
    return JsonResponse(selectors.battle_state(battle), status=201)


@json_api(methods=("POST",))
def battle_vote(request: HttpRequest, battle_id: str) -> HttpResponse:
    battle = _battle(request, battle_id)
    vote = services.vote_record(
        battle=battle, visitor_id=visitor_id(request), choice=_body(request).get("choice")
    )
    return JsonResponse(selectors.vote_public(vote), status=201)


# --- Server-Sent Events -----------------------------------------------------------------------


def _sse(event: str, data: dict[str, Any], event_id: str | None = None) -> str:
    lines = [f"event: {event}"]
    if event_id is not None:
        lines.append(f"id: {event_id}")
    # ASCII only (\u escapes): a raw U+2028 or U+0085 in an answer would split the data line
    # in parsers that split on every Unicode line break (Python's str.splitlines, httpx).
    lines.append(f"data: {json.dumps(data, separators=(',', ':'), ensure_ascii=True)}")
    return "\n".join(lines) + "\n\n"


def _stream_setup(request: HttpRequest, battle_id: str) -> dict[str, Response]:
    battle = selectors.battle_get(
        battle_id=battle_id, visitor_id=visitor_id(request), with_models=False
    )
    # The last turn's current answers in one query (a turn has one current answer per side).
    rows = list(
        Response.objects.filter(turn__battle=battle, superseded=False)
        .select_related("turn")
        .order_by("-turn__index", "side")[:2]
    )
    assert rows, "a battle always has a first turn with its answers"
    return {r.side: r for r in rows if r.turn.index == rows[0].turn.index}


def _responses_refresh(ids: list[int]) -> dict[int, Response]:
    return {r.id: r for r in Response.objects.filter(id__in=ids)}


def _final_event(response: Response) -> tuple[str, dict[str, Any]]:
    """The event that ends one side, from the database's record."""
    if response.status == ResponseStatus.DONE:
        return "done", {"side": response.side, "finish_reason": response.finish_reason}
    return "failed", {
        "side": response.side,
        "error": selectors.visitor_failure_message(response.side),
    }


@require_GET
async def battle_stream(request: HttpRequest, battle_id: str) -> HttpResponse:
    """Both sides' deltas of the battle's last turn, until both are done or failed.

    Event ids hold both sides' stream positions; a reconnect with Last-Event-ID resumes there.
    Where a side's Redis stream has expired, its stored text comes as one `snapshot` event.
    """
    try:
        responses = await off_loop(_stream_setup)(request, battle_id)
    except ArenaError as error:
        return error_response(error)
    last_event_id = request.headers.get("Last-Event-ID") or request.GET.get("last_event_id")
    cursors = streams.cursors_parse(last_event_id, {s: r.id for s, r in responses.items()})
    reply = StreamingHttpResponse(
        _stream_events(responses, cursors), content_type="text/event-stream"
    )
    reply["Cache-Control"] = "no-cache"
    reply["X-Accel-Buffering"] = "no"  # nginx: do not buffer a stream
    return reply


# One connection pool per event loop (one per uvicorn process): a stream borrows a connection
# instead of opening its own, which spares a TCP handshake and a Redis client setup per visitor.
_stream_pools: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, aioredis.ConnectionPool] = (
    weakref.WeakKeyDictionary()
)


def _stream_pool() -> aioredis.ConnectionPool:
    loop = asyncio.get_running_loop()
    pool = _stream_pools.get(loop)
    if pool is None:
        # The socket must outwait a blocking XREAD; the default timeout would cut it short.
        pool = aioredis.ConnectionPool.from_url(
            settings.REDIS_URL,
            decode_responses=True,
            socket_timeout=settings.ARENA_SSE_KEEPALIVE_SECONDS + 10,
            # Each open stream holds a connection while it waits in XREAD.
            max_connections=settings.ARENA_REDIS_MAX_CONNECTIONS,
        )
        _stream_pools[loop] = pool
    return pool


# How often a stream that keeps delivering looks for a side that ended without a stream entry.
STREAM_CHECK_SECONDS = 1.0
# The entries after which a side's stream has nothing more.
FINAL_KINDS = (streams.DONE, streams.FAIL)


def _key(response: Response) -> str:
    return streams.stream_key(response.turn.battle_id, response.id)


async def _stream_events(
    responses: dict[str, Response], cursors: dict[str, streams.Cursor]
) -> AsyncIterator[str]:
    keepalive_s = settings.ARENA_SSE_KEEPALIVE_SECONDS
    client = aioredis.Redis(connection_pool=_stream_pool())
    open_sides = set(responses)
    by_key = {_key(r): side for side, r in responses.items()}
    quiet = False
    # The rows were read a moment ago: the first pass asks Redis only about the sides they say
    # have ended, and reads no row again (that cost a thread hop and a query before any token).
    fresh: dict[str, Response] | None = responses
    loop = asyncio.get_running_loop()
    checked = loop.time()
    try:
        yield "retry: 1000\n\n"
        # A reconnect after a side's last event: that side has nothing more to say.
        open_sides -= await _sides_seen_ending(client, responses, cursors)
        while open_sides:
            # The database has the last word for a side whose stream is gone (expired, Redis
            # restarted) or has gone quiet (its worker died and the reaper failed it). Every
            # failure is also written to the stream, so between deltas a look every
            # STREAM_CHECK_SECONDS is enough (two EXISTS per delta were most of its Redis work).
            if fresh is not None or quiet or loop.time() - checked >= STREAM_CHECK_SECONDS:
                ended = await _sides_ended(client, responses, open_sides, quiet=quiet, fresh=fresh)
                fresh, checked = None, loop.time()
            else:
                ended = {}
            events: list[str] = []
            for side, response in ended.items():
                if response.text:
                    events.append(_sse("snapshot", {"side": side, "text": response.text}))
                event, data = _final_event(response)
                events.append(_sse(event, data, streams.cursors_format(cursors)))
                open_sides.discard(side)
            if events:
                yield "".join(events)
            if not open_sides:
                break
            query = {_key(responses[side]): cursors[side].entry_id for side in open_sides}
            batches = await client.xread(query, block=keepalive_s * 1000, count=100)
            quiet = not batches
            if quiet:
                yield ": keep-alive\n\n"
                continue
            # Everything one read returned goes out in one write: one ASGI message and one
            # send() per read, however many entries it holds.
            yield "".join(_entry_events(batches, by_key, cursors, open_sides))
        yield _sse("end", {})
    except asyncio.CancelledError:
        raise  # The visitor went away.
    except redis.RedisError:
        # Redis restarted or is unreachable: say so and close; EventSource reconnects by itself
        # with its Last-Event-ID, and the database answers for the sides that ended meanwhile.
        yield _sse("interrupted", {"error": "The stream was interrupted; reconnecting."})
    finally:
        with contextlib.suppress(redis.RedisError):
            await client.aclose()


def _entry_events(
    batches: list[Any],
    by_key: dict[str, str],
    cursors: dict[str, streams.Cursor],
    open_sides: set[str],
) -> Iterator[str]:
    """The events of one XREAD's entries, in order; a side's final entry closes it."""
    for key, entries in batches:
        side = by_key[key]
        for entry_id, fields in entries:
            cursors[side].entry_id = entry_id
            event_id = streams.cursors_format(cursors)
            entry = streams.stream_entry_decode(fields)
            if entry.kind == streams.DELTA:
                yield _sse("delta", {"side": side, "text": entry.text}, event_id)
            elif entry.kind == streams.DONE:
                yield _sse("done", {"side": side, "finish_reason": entry.text}, event_id)
                open_sides.discard(side)
            elif entry.kind == streams.FAIL:
                yield _sse("failed", {"side": side, "error": entry.text}, event_id)
                open_sides.discard(side)


async def _sides_seen_ending(
    client: aioredis.Redis, responses: dict[str, Response], cursors: dict[str, streams.Cursor]
) -> set[str]:
    """The sides whose last event the visitor already received: a reconnect's Last-Event-ID
    points at their stream's final entry. (Read from there, such a side would wait for an
    entry that never comes, and the database would then replay its end a second time.)"""
    seen = set()
    for side, cursor in cursors.items():
        if cursor.entry_id == "0-0":
            continue  # a first connection, or a side whose answer changed
        entries = await client.xrange(_key(responses[side]), cursor.entry_id, cursor.entry_id)
        if entries and streams.stream_entry_decode(entries[0][1]).kind in FINAL_KINDS:
            seen.add(side)
    return seen


async def _sides_ended(
    client: aioredis.Redis,
    responses: dict[str, Response],
    open_sides: set[str],
    *,
    quiet: bool,
    fresh: dict[str, Response] | None = None,
) -> dict[str, Response]:
    """The open sides that the database says have ended: among those without a stream, or
    among all of them after a quiet wait. With `fresh` (rows just read), only its final rows
    are candidates and they are not read again."""
    if fresh is not None:
        return {
            side: fresh[side]
            for side in open_sides
            if fresh[side].is_final and not await client.exists(_key(fresh[side]))
        }
    candidates = [
        side for side in open_sides if quiet or not await client.exists(_key(responses[side]))
    ]
    if not candidates:
        return {}
    fresh = await off_loop(_responses_refresh)([responses[side].id for side in candidates])
    return {
        side: fresh[responses[side].id] for side in candidates if fresh[responses[side].id].is_final
    }
