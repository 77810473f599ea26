from __future__ import annotations

from django.contrib import admin

from arena.models import ArenaModel, Battle, Response, Turn, Vote


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


@admin.register(Battle)
class BattleAdmin(admin.ModelAdmin):
    list_display = ["id", "model_a", "model_b", "created_at"]
    list_select_related = ["model_a", "model_b"]
    readonly_fields = ["id", "model_a", "model_b", "visitor_id", "ip_hash", "created_at"]
    inlines = [TurnInline]


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
