from __future__ import annotations

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from arena.models import AnswerFeedback, ArenaModel, Battle, Response, Turn, Vote


@admin.register(ArenaModel)
class ArenaModelAdmin(admin.ModelAdmin):
    list_display = [
        "name",
        "display_name",
        "organization",
        "backend",
        "sampling_weight",
        "max_concurrency",
        "enabled",
        "healthy",
        "consecutive_failures",
        "in_registry",
    ]
    list_filter = ["enabled", "healthy", "backend", "in_registry"]
    readonly_fields = ["consecutive_failures", "health_error", "health_changed_at"]
    list_editable = ["sampling_weight", "enabled"]
    search_fields = ["name", "display_name", "organization"]


class TurnInline(admin.TabularInline):
    model = Turn
    extra = 0
    fields = ["index", "prompt"]
    readonly_fields = fields


@admin.action(description="Revoke the share links of the selected battles")
def revoke_share_links(
    model_admin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet
) -> None:
    revoked = queryset.filter(share_revoked=False).update(share_revoked=True)
    model_admin.message_user(request, f"{revoked} share links revoked; their pages now answer 404.")


@admin.register(Battle)
class BattleAdmin(admin.ModelAdmin):
    list_display = ["id", "mode", "model_a", "model_b", "share_id", "share_revoked", "created_at"]
    list_filter = ["mode", "share_revoked"]
    list_select_related = ["model_a", "model_b"]
    readonly_fields = [
        "id", "mode", "model_a", "model_b", "visitor_id", "ip_hash", "created_at", "share_id"
    ]  # fmt: skip
    actions = [revoke_share_links]
    inlines = [TurnInline]


@admin.register(AnswerFeedback)
class AnswerFeedbackAdmin(admin.ModelAdmin):
    list_display = ["id", "response", "label", "created_at", "updated_at"]
    list_filter = ["label"]
    readonly_fields = [f.name for f in AnswerFeedback._meta.fields]


@admin.register(Response)
class ResponseAdmin(admin.ModelAdmin):
    list_display = ["id", "turn", "side", "model", "status", "completion_tokens", "latency_ms"]
    list_filter = ["status", "model"]
    list_select_related = ["model", "turn"]
    readonly_fields = [f.name for f in Response._meta.fields]


@admin.register(Vote)
class VoteAdmin(admin.ModelAdmin):
    list_display = ["battle", "model_a", "model_b", "outcome", "is_valid", "created_at"]
    list_filter = ["outcome", "is_valid", "language"]
    list_select_related = ["model_a", "model_b"]
    readonly_fields = [f.name for f in Vote._meta.fields if f.name not in ("is_valid",)]
