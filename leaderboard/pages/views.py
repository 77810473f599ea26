"""Leaderboard pages and API: they read the stored snapshot and compute nothing."""

from __future__ import annotations

import csv
from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.template.loader import render_to_string
from django.utils.safestring import mark_safe
from django.views.decorators.http import require_GET

from arena.api import error_response, json_api
from arena.errors import ArenaError
from arena.models import ArenaModel
from leaderboard.models import LeaderboardSnapshot
from leaderboard.pages import prompt_rank, selectors
from leaderboard.pages.page_cache import cached

# Existing columns first, in their order; new ones are only ever appended.
CSV_FIELDS = [
    "rank", "model", "display_name", "rating", "lower", "upper", "battles", "organization",
    "license", "rank_plain", "rank_style_control", "status", "deprecated", "ci_plus", "ci_minus",
    "group", "note",
]  # fmt: skip
NO_SNAPSHOT = "No leaderboard yet: no snapshot was computed."


def _flag(request: HttpRequest, name: str) -> bool:
    return request.GET.get(name, "").lower() in ("1", "true", "yes", "on")


def _options(request: HttpRequest) -> tuple[str, bool]:
    return request.GET.get("category") or "overall", _flag(request, "style_control")


def _page_variant(request: HttpRequest) -> tuple[str, bool, bool]:
    return (*_options(request), _flag(request, "show_deprecated"))


def _no_options(request: HttpRequest) -> tuple[()]:
    return ()


def _not_found_page(request: HttpRequest, message: str) -> HttpResponse:
    return render(request, "error.html", {"status": 404, "message": message}, status=404)


@cached(_page_variant)
@require_GET
def leaderboard_page(request: HttpRequest) -> HttpResponse:
    # The options the cache keys this page by (@cached), read by the same function.
    category, style, show_all = _page_variant(request)
    snapshot = selectors.snapshot_latest()
    if snapshot is None:
        return render(request, "leaderboard/leaderboard.html", {"board": ""})
    payload = selectors.snapshot_payload(snapshot)
    models = selectors.registry()
    # The board depends only on the snapshot (immutable), the options and the registry's display
    # facts: render it once and keep it with the snapshot, so a page costs no template work.
    key = ("board", category, style, show_all, selectors.registry_fingerprint(models))
    board = payload.memo.get(key)
    if board is None:
        try:
            context = _board_context(snapshot, payload, models, category, style, show_all)
        except ArenaError as error:
            return _not_found_page(request, error.message)
        board = render_to_string("leaderboard/_board.html", context)
        selectors.memo_put(payload, key, board)
    return render(request, "leaderboard/leaderboard.html", {"board": mark_safe(board)})


def _board_context(
    snapshot: LeaderboardSnapshot,
    payload: selectors.Payload,
    models: dict[str, ArenaModel],
    category: str,
    style: bool,
    show_all: bool,
) -> dict[str, Any]:
    rows = selectors.table_rows(payload, models, category=category, style_control=style)
    shown = rows if show_all else [r for r in rows if not r["deprecated"]]
    svgs = selectors.leaderboard_plots(payload, shown, category=category, style_control=style)
    result = payload.results[category]
    return {
        "snapshot": snapshot,
        "category": category,
        "category_label": selectors.category_label(category, payload),
        "style": style,
        "show_all": show_all,
        "rows": shown,
        "hidden": len(rows) - len(shown),
        "rated": sum(r["status"] == "rated" for r in shown),
        "meta": selectors.leaderboard_meta(
            snapshot, payload, category=category, style_control=style
        ),
        # The SVG builders escape every text they draw.
        "plots": {name: mark_safe(svg) for name, svg in svgs.items()},
        "categories": [(c, selectors.category_label(c, payload)) for c in payload.results],
        "descriptions": selectors.category_descriptions(payload),
        "excluded": payload.details.get("votes", {}).get("excluded", {}),
        "voter_sources": payload.details.get("voters", []),
        "sampling": selectors.sampling_rows(payload, models),
        "min_battles": selectors.MIN_BATTLES,
        "n_battles": result["n_battles"],
        "has_style": bool(result.get("style_rows")),
        "style_note": result.get("style_error", ""),
        "groups": len({r["group"] for r in shown} - {None}),
        "style_coefficients": result.get("style", []),
    }


@cached(_no_options)
@require_GET
def model_page(request: HttpRequest, name: str) -> HttpResponse:
    snapshot = selectors.snapshot_latest()
    try:
        card = selectors.model_card(snapshot, name)
    except ArenaError as error:
        return _not_found_page(request, error.message)
    history = ""
    if snapshot is not None:
        payload = selectors.snapshot_payload(snapshot)
        history = selectors.model_history_svg(payload, name, card["display_name"])
    context = {
        "card": card,
        "snapshot": snapshot,
        "history": mark_safe(history),  # the SVG builders escape all text
        "min_battles": selectors.MIN_BATTLES,
    }
    return render(request, "leaderboard/model.html", context)


def _table_or_error(request: HttpRequest) -> tuple[dict[str, Any] | None, HttpResponse | None]:
    snapshot = selectors.snapshot_latest()
    if snapshot is None:
        return None, JsonResponse({"error": NO_SNAPSHOT}, status=404)
    category, style = _options(request)
    payload = selectors.snapshot_payload(snapshot)
    try:
        rows = selectors.table_rows(
            payload, selectors.registry(), category=category, style_control=style
        )
    except ArenaError as error:
        return None, error_response(error)
    meta = selectors.leaderboard_meta(snapshot, payload, category=category, style_control=style)
    return {"meta": meta, "rows": rows}, None


@cached(_options)
@require_GET
def api_leaderboard(request: HttpRequest) -> HttpResponse:
    data, error = _table_or_error(request)
    return error or JsonResponse(data)


@cached(_options)
@require_GET
def api_leaderboard_csv(request: HttpRequest) -> HttpResponse:
    data, error = _table_or_error(request)
    if error:
        return error
    assert data is not None
    reply = HttpResponse(content_type="text/csv; charset=utf-8")
    reply["Content-Disposition"] = 'attachment; filename="leaderboard.csv"'
    writer = csv.DictWriter(reply, fieldnames=CSV_FIELDS, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(data["rows"])
    return reply


@cached(_no_options)
@require_GET
def api_model(request: HttpRequest, name: str) -> HttpResponse:
    snapshot = selectors.snapshot_latest()
    try:
        card = selectors.model_card(snapshot, name)
    except ArenaError as error:
        return error_response(error)
    card["snapshot_id"] = snapshot.id if snapshot else None
    card["snapshot_created_at"] = snapshot.created_at.isoformat() if snapshot else None
    return JsonResponse(card)


@require_GET
def topics_page(request: HttpRequest) -> HttpResponse:
    """The topics of the latest snapshot, ranks per topic, and a form to rank for one prompt."""
    context = prompt_rank.topics_overview()
    prompt = request.GET.get("prompt")
    status = 200
    if prompt is not None:
        context["prompt"] = prompt
        try:
            context["ranking"] = prompt_rank.prompt_rank(prompt=prompt)
        except ArenaError as error:
            context["rank_error"], status = error.message, error.status
    return render(request, "leaderboard/topics.html", context, status=status)


@json_api(methods=("GET",))
def api_rank(request: HttpRequest) -> HttpResponse:
    """The models ranked for prompts like ``?prompt=``: 200 with "status": "ok", or with
    "status": "not enough similar battles" and the effective size; 400 for a bad prompt.
    Off the event loop (a weighted fit over every battle takes a tenth of a second)."""
    return JsonResponse(prompt_rank.prompt_rank(prompt=request.GET.get("prompt")))
