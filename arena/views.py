"""Pages of the arena. Thin: read through selectors, render."""

from __future__ import annotations

import hmac
import ipaddress
from typing import Any

import redis
from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import ensure_csrf_cookie
from django.views.decorators.http import require_GET

from arena import metrics, readiness, selectors
from arena.visitors import client_address, visitor_id

# Paths of the JSON API: their errors answer in JSON, not as a page.
JSON_PATHS = ("/battles", "/chats", "/side-by-side/")


def site_context(request: HttpRequest) -> dict[str, Any]:
    return {"demo_models": selectors.demo_models_enabled()}


@require_GET
@ensure_csrf_cookie
def arena_page(request: HttpRequest) -> HttpResponse:
    visitor_id(request)  # Starts the anonymous session that owns this visitor's battles.
    context = {
        "max_prompt_chars": settings.ARENA_MAX_PROMPT_CHARS,
        "max_turns": settings.ARENA_MAX_TURNS,
        "enabled_models": len(selectors.model_pool()),
    }
    return render(request, "arena/arena.html", context)


def csrf_failure(request: HttpRequest, reason: str = "") -> HttpResponse:
    message = (
        "The CSRF check failed: load the arena page (GET /) first, then send its csrftoken "
        "cookie back in the X-CSRFToken header."
    )
    if request.path.startswith(JSON_PATHS) or "json" in request.headers.get("Accept", ""):
        return JsonResponse({"error": message}, status=403)
    return render(request, "error.html", {"status": 403, "message": message}, status=403)


def not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    message = "There is nothing at this address."
    if request.path.startswith(JSON_PATHS):
        return JsonResponse({"error": message}, status=404)
    return render(request, "error.html", {"status": 404, "message": message}, status=404)


def server_error(request: HttpRequest) -> HttpResponse:
    message = "Something went wrong on our side; it has been logged."
    if request.path.startswith(JSON_PATHS):
        return JsonResponse({"error": message}, status=500)
    return render(request, "error.html", {"status": 500, "message": message}, status=500)


# --- Operations: probes and metrics (docs/deployment.md) --------------------------------------


@never_cache
async def healthz(request: HttpRequest) -> HttpResponse:
    """Liveness: the process answers. Async, so a busy sync thread cannot fail the probe and
    get a healthy process restarted; it checks no dependency (that is /readyz)."""
    return JsonResponse({"status": "ok"})


@never_cache
@require_GET
async def readyz(request: HttpRequest) -> HttpResponse:
    """Readiness: the database and Redis answer (and, with ?workers=1, every enabled model's
    queue has a live worker). 503 when not. Only a caller with the metrics token learns what
    was checked and what failed: the details name worker hosts and model queues."""
    checks = await readiness.readiness_checks(workers=request.GET.get("workers") == "1")
    failing = [name for name, check in checks.items() if not check["ok"]]
    body: dict[str, Any] = {"status": "unavailable" if failing else "ok"}
    if _has_metrics_token(request):
        body["checks"] = checks
        if failing:
            body["failing"] = failing
    return JsonResponse(body, status=503 if failing else 200)


@never_cache
@require_GET
async def metrics_view(request: HttpRequest) -> HttpResponse:
    """Prometheus metrics of the whole arena (every process, every host), read from Redis.

    With the token, everything. From ARENA_METRICS_NETWORKS without it, only the series that
    name no model: the demo opens those networks to every visitor, and a per-model series that
    moves while a battle runs would name its two models before the vote."""
    per_model = _has_metrics_token(request)
    if not per_model and not _in_metrics_networks(request):
        if settings.ARENA_METRICS_TOKEN:
            reply = JsonResponse({"error": "A bearer token is required."}, status=401)
            reply["WWW-Authenticate"] = 'Bearer realm="metrics"'
            return reply
        return JsonResponse({"error": "Metrics are not served to this address."}, status=403)
    try:
        body = await sync_to_async(_metrics_text, thread_sensitive=False)(per_model)
    except redis.RedisError as exc:
        return JsonResponse({"error": f"Redis is unavailable: {exc}"}, status=503)
    return HttpResponse(body, content_type=metrics.CONTENT_TYPE)


def _has_metrics_token(request: HttpRequest) -> bool:
    token = settings.ARENA_METRICS_TOKEN
    # surrogatepass: any header a client sends compares, none raises (over ASGI a header is
    # latin-1 text; a test client or a WSGI server may hand over a lone surrogate).
    sent = request.headers.get("Authorization", "").encode("utf-8", "surrogatepass")
    return bool(token) and hmac.compare_digest(sent, f"Bearer {token}".encode())


def _in_metrics_networks(request: HttpRequest) -> bool:
    try:
        address = ipaddress.ip_address(client_address(request))
    except ValueError:
        return False
    return any(address in network for network in settings.ARENA_METRICS_NETWORKS)


def _metrics_text(per_model: bool) -> bytes:
    try:
        return metrics.metrics_exposition(per_model=per_model)
    finally:
        # A pool thread: no request's end closes the connection that the gauges opened.
        connection.close()
