"""Cached leaderboard replies, served first in the middleware chain.

LeaderboardCacheMiddleware sits first in settings.MIDDLEWARE. For a GET of a view marked with
`page_cache.cached` it looks the reply up by snapshot stamp, path and the view's options; a hit
is answered here, before sessions, CSRF, auth and messages run (they have nothing to do for a
reply that is the same for everyone). A miss runs the whole chain; its reply is stored only when
it is a plain 200 that no visitor state went into: no cookie set, no `Vary: Cookie` (which
Django adds when the session, and so the user, was read or a CSRF token was made), not private.

Every reply of a marked view, hit or first build, leaves through the same code, so both carry the
same headers: the content headers stored with the body, an ETag (a matching If-None-Match gets a
304), gzip when the client accepts it (`Vary: Accept-Encoding`), and the security headers that
the rest of the chain would have added (Django's SecurityMiddleware, our Content-Security-Policy,
X-Frame-Options, Content-Length), applied by those same middleware classes, so a change to their
settings applies to cached replies at once. A request those middleware would redirect or refuse
(http to https, a bad host) goes through the whole chain instead.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Hashable
from typing import Any, TypeGuard

from asgiref.sync import sync_to_async
from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseBase, HttpResponseNotModified
from django.urls import Resolver404, resolve
from django.utils.cache import patch_vary_headers
from django.utils.module_loading import import_string

from arena.middleware import AsyncHandler, Handler, HybridMiddleware
from leaderboard.pages import page_cache
from leaderboard.pages.page_cache import Entry

# The middleware whose work a cached reply still needs, applied in the chain's order.
REPLAYED = (
    "django.middleware.security.SecurityMiddleware",
    "arena.middleware.SecurityHeadersMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
)
_COMMAS = re.compile(r"\s*,\s*")
_GZIP_RE = re.compile(r"^\s*(gzip|\*)\s*(;\s*q\s*=\s*([0-9.]+))?\s*$", re.IGNORECASE)


def _unused(request: HttpRequest) -> HttpResponseBase:
    raise AssertionError("replayed middleware only process requests and responses")


def accepts_gzip(request: HttpRequest) -> bool:
    for part in request.headers.get("Accept-Encoding", "").split(","):
        match = _GZIP_RE.match(part)
        if match and (match.group(3) is None or _quality(match.group(3)) > 0):
            return True
    return False


def _quality(raw: str) -> float:
    try:
        return float(raw)
    except ValueError:
        return 0.0


def etag_matches(request: HttpRequest, tags: tuple[str, ...]) -> bool:
    header = request.headers.get("If-None-Match")
    if not header:
        return False
    for raw in header.split(","):
        tag = raw.strip().removeprefix("W/")
        if tag == "*" or tag in tags:
            return True
    return False


def cacheable(response: HttpResponseBase) -> TypeGuard[HttpResponse]:
    """A reply that is the same for every visitor: a plain 200 that set no cookie and read no
    session or CSRF token (Django then adds `Vary: Cookie`)."""
    if response.status_code != 200 or response.streaming or response.cookies:
        return False
    if not isinstance(response, HttpResponse) or "Content-Encoding" in response:
        return False
    vary = {v.strip().lower() for v in _COMMAS.split(response.get("Vary", "")) if v.strip()}
    if vary - {"accept-encoding"}:
        return False
    control = response.get("Cache-Control", "").lower()
    return "private" not in control and "no-store" not in control


class LeaderboardCacheMiddleware(HybridMiddleware):
    def __init__(self, get_response: Handler | AsyncHandler) -> None:
        super().__init__(get_response)
        # Only those in use (a deployment may drop one), each with what it does on the way in
        # (a redirect or refusal sends the request through the whole chain) and out.
        self.replayed: list[Any] = [
            import_string(path)(_unused) for path in settings.MIDDLEWARE if path in REPLAYED
        ]
        # Concurrent misses of one key in this process wait for the first build (ASGI).
        self.building: dict[str, asyncio.Future[Entry | None]] = {}

    def __call__(self, request: HttpRequest) -> HttpResponseBase | Awaitable[HttpResponseBase]:
        if self.is_async:
            return self._acall(request)
        options = self.options(request)
        if options is None:
            return self._sync_response(request)
        found, stamp = page_cache.stamp_known()
        if not found:
            stamp = page_cache.stamp_refresh()
        if stamp is None:
            return self._sync_response(request)
        key = page_cache.page_key(request, stamp, options)
        entry = page_cache.local_get(key) or page_cache.shared_get(key)
        if entry is None:
            response = self._sync_response(request)
            if not cacheable(response):
                return response
            entry = self.store(key, response)
        return self.reply(request, entry)

    def _sync_response(self, request: HttpRequest) -> HttpResponseBase:
        response = self.get_response(request)
        assert isinstance(response, HttpResponseBase)
        return response

    async def _acall(self, request: HttpRequest) -> HttpResponseBase:
        get_response: AsyncHandler = self.get_response  # type: ignore[assignment]
        options = self.options(request)
        if options is None:
            return await get_response(request)
        found, stamp = page_cache.stamp_known()
        if not found:
            stamp = await sync_to_async(page_cache.stamp_refresh)()
        if stamp is None:
            return await get_response(request)
        key = page_cache.page_key(request, stamp, options)
        entry = page_cache.local_get(key)
        if entry is None:
            entry = await sync_to_async(page_cache.shared_get, thread_sensitive=False)(key)
        if entry is None:
            building = self.building.get(key)
            if building is not None:
                entry = await asyncio.shield(building)
                if entry is None:  # the first build was not cacheable: build our own
                    return await get_response(request)
            else:
                future: asyncio.Future[Entry | None] = asyncio.get_running_loop().create_future()
                self.building[key] = future
                try:
                    response = await get_response(request)
                    if cacheable(response):
                        entry = await sync_to_async(self.store, thread_sensitive=False)(
                            key, response
                        )
                finally:
                    del self.building[key]
                    future.set_result(entry)
                if entry is None:
                    return response
        return self.reply(request, entry)

    def options(self, request: HttpRequest) -> tuple[Hashable, ...] | None:
        """The options (its view's variant) of a GET for a cached view that nothing in the chain
        would redirect or refuse; None for anything else."""
        if request.method != "GET":
            return None
        try:
            match = resolve(request.path_info)
        except Resolver404:
            return None
        variant = page_cache.view_variant(match.func)
        if variant is None:
            return None
        for middleware in self.replayed:
            handle = getattr(middleware, "process_request", None)
            if handle is not None and handle(request) is not None:
                return None
        return variant(request)

    def store(self, key: str, response: HttpResponse) -> Entry:
        headers = tuple((n, v) for n, v in response.items() if n in page_cache.CONTENT_HEADERS)
        entry = Entry.build(response.content, headers)
        page_cache.entry_store(key, entry)
        return entry

    def reply(self, request: HttpRequest, entry: Entry) -> HttpResponseBase:
        zipped = accepts_gzip(request) and len(entry.gzipped) < len(entry.body)
        etag = f'"{entry.etag}-gzip"' if zipped else f'"{entry.etag}"'
        response: HttpResponse
        if etag_matches(request, (f'"{entry.etag}"', f'"{entry.etag}-gzip"')):
            response = HttpResponseNotModified()
        else:
            response = HttpResponse(entry.gzipped if zipped else entry.body)
            for name, value in entry.headers:
                response[name] = value
            if zipped:
                response["Content-Encoding"] = "gzip"
        response["ETag"] = etag
        patch_vary_headers(response, ("Accept-Encoding",))
        for middleware in reversed(self.replayed):
            handle = getattr(middleware, "process_response", None) or middleware.process
            response = handle(request, response)
        if response.status_code == 304:
            del response["Content-Length"]
        return response
