"""Pages of the arena. Thin: read through selectors, render."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.csrf import ensure_csrf_cookie
from django.views.decorators.http import require_GET

from arena import selectors
from arena.visitors import visitor_id


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
    if request.path.startswith("/battles") or "json" in request.headers.get("Accept", ""):
        return JsonResponse({"error": message}, status=403)
    return render(request, "error.html", {"status": 403, "message": message}, status=403)


def not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    message = "There is nothing at this address."
    if request.path.startswith("/battles"):
        return JsonResponse({"error": message}, status=404)
    return render(request, "error.html", {"status": 404, "message": message}, status=404)


def server_error(request: HttpRequest) -> HttpResponse:
    message = "Something went wrong on our side; it has been logged."
    if request.path.startswith("/battles"):
        return JsonResponse({"error": message}, status=500)
    return render(request, "error.html", {"status": 500, "message": message}, status=500)


def healthz(request: HttpRequest) -> HttpResponse:
    return JsonResponse({"status": "ok"})
