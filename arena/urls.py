from __future__ import annotations

from django.contrib import admin
from django.urls import include, path

from arena import api, views

urlpatterns = [
    path("", views.arena_page, name="arena"),
    path("battles", api.battles_create, name="battles-create"),
    path("battles/<str:battle_id>", api.battle_detail, name="battle-detail"),
    path("battles/<str:battle_id>/turns", api.battle_continue, name="battle-continue"),
    path("battles/<str:battle_id>/regenerate", api.battle_regenerate, name="battle-regenerate"),
    path("battles/<str:battle_id>/vote", api.battle_vote, name="battle-vote"),
    path("battles/<str:battle_id>/stream", api.battle_stream, name="battle-stream"),
    path("battles/<str:battle_id>/turns/<int:index>/image", api.battle_image, name="battle-image"),
    path("", include("leaderboard.urls")),
    path("staff/", include("leaderboard.urls_export")),
    path("healthz", views.healthz, name="healthz"),
    path("readyz", views.readyz, name="readyz"),
    path("metrics", views.metrics_view, name="metrics"),
    path("admin/", admin.site.urls),
]

handler404 = "arena.views.not_found"
handler500 = "arena.views.server_error"
