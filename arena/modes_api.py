"""Pages and JSON API of the modes beside the blind battle: side by side with chosen models,
direct chat with one model, and the shared page of a finished battle (see arena/modes.py and
arena/sharing.py). Thin: parse, call the domain, answer; errors through `api.json_api`."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.shortcuts import render
from django.views.decorators.csrf import ensure_csrf_cookie
from django.views.decorators.http import require_GET

from arena import modes, selectors, sharing, streams
from arena.api import _battle, _body, _stream_events, error_response, json_api, off_loop
from arena.errors import ArenaError, NotFound
from arena.models import Battle, Response
from arena.visitors import ip_hash, visitor_id


def _page_context(request: HttpRequest, mode: str) -> dict[str, object]:
    visitor_id(request)  # Starts the anonymous session that owns this visitor's rounds.
    return {
        "mode": mode,
        "models": modes.models_choosable(),
        "max_prompt_chars": settings.ARENA_MAX_PROMPT_CHARS,
        "max_turns": settings.ARENA_MAX_TURNS,
        "enabled_models": len(selectors.model_pool()),
    }


@require_GET
@ensure_csrf_cookie
def side_by_side_page(request: HttpRequest) -> HttpResponse:
    return render(request, "arena/arena.html", _page_context(request, "named"))


@require_GET
@ensure_csrf_cookie
def chat_page(request: HttpRequest) -> HttpResponse:
    return render(request, "arena/chat.html", _page_context(request, "chat"))


@json_api(methods=("GET",))
def models_list(request: HttpRequest) -> HttpResponse:
    return JsonResponse({"models": [selectors.model_public(m) for m in modes.models_choosable()]})


@json_api(methods=("POST",))
def named_battles_create(request: HttpRequest) -> HttpResponse:
    body = _body(request)
    battle = modes.battle_named_create(
        visitor_id=visitor_id(request),
        ip_hash=ip_hash(request),
        prompt=body.get("prompt"),
        model_a=body.get("model_a"),
        model_b=body.get("model_b"),
    )
    return JsonResponse(selectors.battle_state(battle), status=201)


# --- Direct chat ------------------------------------------------------------------------------


def _chat(request: HttpRequest, chat_id: str) -> Battle:
    return modes.chat_get(chat_id=chat_id, visitor_id=visitor_id(request))


@json_api(methods=("POST",))
def chats_create(request: HttpRequest) -> HttpResponse:
    body = _body(request)
    chat = modes.chat_create(
        visitor_id=visitor_id(request),
        ip_hash=ip_hash(request),
        prompt=body.get("prompt"),
        model=body.get("model"),
    )
    return JsonResponse(modes.chat_state(chat), status=201)


@json_api(methods=("GET",))
def chat_detail(request: HttpRequest, chat_id: str) -> HttpResponse:
    return JsonResponse(modes.chat_state(_chat(request, chat_id)))


@json_api(methods=("POST",))
def chat_continue(request: HttpRequest, chat_id: str) -> HttpResponse:
    chat = _chat(request, chat_id)
    modes.chat_continue(
        chat=chat, visitor_id=visitor_id(request), prompt=_body(request).get("prompt")
    )
    return JsonResponse(modes.chat_state(chat), status=201)


@json_api(methods=("POST",))
def chat_feedback(request: HttpRequest, chat_id: str, index: int) -> HttpResponse:
    chat = _chat(request, chat_id)
    feedback = modes.chat_feedback_record(
        chat=chat,
        visitor_id=visitor_id(request),
        turn_index=index,
        label=_body(request).get("label"),
    )
    return JsonResponse({"turn": index, "label": feedback.label}, status=201)


def _chat_stream_setup(request: HttpRequest, chat_id: str) -> dict[str, Response]:
    chat = _chat(request, chat_id)
    turn = chat.turns.order_by("-index").first()
    assert turn is not None
    return selectors.responses_current(turn)


@require_GET
async def chat_stream(request: HttpRequest, chat_id: str) -> HttpResponse:
    """The answer's deltas: the blind battle's relay, over the chat's one side."""
    try:
        responses = await off_loop(_chat_stream_setup)(request, chat_id)
    except ArenaError as error:
        return error_response(error)
    last_event_id = request.headers.get("Last-Event-ID") or request.GET.get("last_event_id")
    cursors = streams.cursors_parse(last_event_id, {s: r.id for s, r in responses.items()})
    reply = StreamingHttpResponse(
        _stream_events(responses, cursors), content_type="text/event-stream"
    )
    reply["Cache-Control"] = "no-cache"
    reply["X-Accel-Buffering"] = "no"
    return reply


# --- Sharing a finished battle ----------------------------------------------------------------


@json_api(methods=("POST",))
def battle_share(request: HttpRequest, battle_id: str) -> HttpResponse:
    share_id = sharing.battle_share(
        battle=_battle(request, battle_id), visitor_id=visitor_id(request)
    )
    return JsonResponse({"share_url": request.build_absolute_uri(f"/shared/{share_id}")})


@require_GET
def shared_page(request: HttpRequest, share_id: str) -> HttpResponse:
    try:
        battle = sharing.shared_battle_get(share_id=share_id)
    except NotFound as error:
        if request.GET.get("format") == "json":
            return error_response(error)
        return render(request, "error.html", {"status": 404, "message": error.message}, status=404)
    state = sharing.shared_battle_state(battle)
    if request.GET.get("format") == "json":
        return JsonResponse(state)
    reply = render(request, "arena/shared.html", {"shared": state})
    # An unguessable address must not leak to other sites through the Referer header.
    reply["Referrer-Policy"] = "no-referrer"
    reply["X-Robots-Tag"] = "noindex"
    return reply
