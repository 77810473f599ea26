"""Small middleware of our own: response headers and the JSON API's error contract.

- SecurityHeadersMiddleware: the Content-Security-Policy (Django 5.2 has no CSP support of its
  own). The policy (settings.ARENA_CONTENT_SECURITY_POLICY) allows scripts and styles from our
  own static files only, so the templates carry no inline <script>, event handler or style
  attribute. X-Content-Type-Options, Referrer-Policy and Cross-Origin-Opener-Policy come from
  SecurityMiddleware, X-Frame-Options from XFrameOptionsMiddleware.
- ApiErrorsMiddleware: every 4xx of the JSON API is JSON with a message, also those that Django
  produces before or around our views (a method that `require_GET` refuses, a body that cannot
  be parsed or is too large).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from http import HTTPStatus

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.conf import settings
from django.http import HttpRequest, HttpResponseBase, JsonResponse

Handler = Callable[[HttpRequest], HttpResponseBase]
AsyncHandler = Callable[[HttpRequest], Awaitable[HttpResponseBase]]

# The JSON API: the battle endpoints and the leaderboard's /api/.
API_PREFIXES = ("/battles", "/api/")
_KEPT_HEADERS = ("Allow", "Retry-After", "WWW-Authenticate")


class HybridMiddleware:
    """A middleware that is sync or async as its neighbours are, so that under ASGI it adds no
    thread hop: `self.is_async` says which, and `__call__` must return an awaitable when it is."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Handler | AsyncHandler) -> None:
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> HttpResponseBase | Awaitable[HttpResponseBase]:
        raise NotImplementedError


class _ResponseMiddleware(HybridMiddleware):
    """A middleware that only looks at the response."""

    def __call__(self, request: HttpRequest) -> HttpResponseBase | Awaitable[HttpResponseBase]:
        if self.is_async:
            return self._acall(request)
        response = self.get_response(request)
        assert isinstance(response, HttpResponseBase)
        return self.process(request, response)

    async def _acall(self, request: HttpRequest) -> HttpResponseBase:
        response = await self.get_response(request)  # type: ignore[misc]
        return self.process(request, response)

    def process(self, request: HttpRequest, response: HttpResponseBase) -> HttpResponseBase:
        raise NotImplementedError


class SecurityHeadersMiddleware(_ResponseMiddleware):
    def process(self, request: HttpRequest, response: HttpResponseBase) -> HttpResponseBase:
        policy = settings.ARENA_CONTENT_SECURITY_POLICY
        # A view that sets its own policy knows better.
        if policy and "Content-Security-Policy" not in response:
            response["Content-Security-Policy"] = policy
        return response


class ApiErrorsMiddleware(_ResponseMiddleware):
    def process(self, request: HttpRequest, response: HttpResponseBase) -> HttpResponseBase:
        if (
            not 400 <= response.status_code < 500
            or not request.path.startswith(API_PREFIXES)
            or response.get("Content-Type", "").startswith("application/json")
        ):
            return response
        reply = JsonResponse({"error": _message(request, response)}, status=response.status_code)
        for header in _KEPT_HEADERS:
            if header in response:
                reply[header] = response[header]
        return reply


def _message(request: HttpRequest, response: HttpResponseBase) -> str:
    status = response.status_code
    if status == 405:
        allowed = " or ".join(m.strip() for m in response.get("Allow", "").split(",") if m.strip())
        return f"Use {allowed or 'another method'} here, not {request.method}."
    if status == 400:
        return "The request could not be read: its body is malformed or too large."
    if status == 404:
        return "There is nothing at this address."
    try:
        return f"{HTTPStatus(status).phrase}."
    except ValueError:
        return f"The request was refused ({status})."


class SyncMiddlewareBoundary:
    """The innermost middleware, sync only: it makes Django run the whole stack in sync mode.

    Under ASGI with every middleware async-capable, each of Django's MiddlewareMixin middleware
    (session, CSRF, auth, messages, ...) runs its process_request and process_response through
    sync_to_async on the one thread-sensitive thread: about a dozen thread hops per request,
    each waiting for that thread. With this boundary the chain is adapted once: one hop into the
    sync stack, and one back to the event loop where the view is async."""

    sync_capable = True
    async_capable = False

    def __init__(self, get_response: Handler) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        return self.get_response(request)
