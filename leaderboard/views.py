"""Leaderboard pages and API: they read the stored snapshot and compute nothing."""

from __future__ import annotations

import csv

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from arena.api import error_response
from arena.errors import ArenaError
from leaderboard import selectors

CSV_FIELDS = [
    "rank", "model", "display_name", "rating", "lower", "upper", "battles", "organization",
    "license", "rank_plain", "rank_style_control",
]  # fmt: skip


def _options(request: HttpRequest) -> tuple[str, bool]:
    category = request.GET.get("category") or "overall"
    style = request.GET.get("style_control", "").lower() in ("1", "true", "yes", "on")
    return category, style


@require_GET
def leaderboard_page(request: HttpRequest) -> HttpResponse:
    snapshot = selectors.snapshot_latest()
    category, style = _options(request)
    context: dict[str, object] = {"snapshot": snapshot, "category": category, "style": style}
    if snapshot is not None:
        try:
            context["rows"] = selectors.leaderboard_table(
                snapshot, category=category, style_control=style
            )
        except ArenaError as error:
            return render(
                request, "error.html", {"status": 404, "message": error.message}, status=404
            )
        context["categories"] = list(snapshot.results)
        context["n_battles"] = snapshot.results[category]["n_battles"]
    return render(request, "leaderboard/leaderboard.html", context)


def _table_or_error(request: HttpRequest) -> tuple[dict[str, object] | None, HttpResponse | None]:
    snapshot = selectors.snapshot_latest()
    if snapshot is None:
        return None, JsonResponse(
            {"error": "No leaderboard yet: no snapshot was computed."}, status=404
        )
    category, style = _options(request)
    try:
        rows = selectors.leaderboard_table(snapshot, category=category, style_control=style)
    except ArenaError as error:
        return None, error_response(error)
    meta = {
        "snapshot_id": snapshot.id,
        "created_at": snapshot.created_at.isoformat(),
        "method": snapshot.method,
        "params": snapshot.params,
        "code_version": snapshot.code_version,
        "category": category,
        "style_control": style,
        "valid_votes": snapshot.results[category]["n_battles"],
        "categories": list(snapshot.results),
    }
    return {"meta": meta, "rows": rows}, None


@require_GET
def api_leaderboard(request: HttpRequest) -> HttpResponse:
    data, error = _table_or_error(request)
    return error or JsonResponse(data)


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
    writer.writerows(data["rows"])  # type: ignore[arg-type]
    return reply
