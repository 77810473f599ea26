from __future__ import annotations

from django.contrib import admin
from django.urls import include, path

from arena import api, modes_api, views

urlpatterns = [
    path("", views.arena_page, name="arena"),
    path("battles", api.battles_create, name="battles-create"),
    # Modes beside the blind battle (arena/modes_api.py), before battles/<id>.
    path("side-by-side", modes_api.side_by_side_page, name="side-by-side"),
    path("side-by-side/models", modes_api.models_list, name="side-by-side-models"),
    path("side-by-side/battles", modes_api.named_battles_create, name="named-battles-create"),
    path("battles/<str:battle_id>/share", modes_api.battle_share, name="battle-share"),
    path("shared/<str:share_id>", modes_api.shared_page, name="shared-battle"),
    path("chat", modes_api.chat_page, name="chat"),
    path("chats", modes_api.chats_create, name="chats-create"),
    path("chats/<str:chat_id>", modes_api.chat_detail, name="chat-detail"),
    path("chats/<str:chat_id>/turns", modes_api.chat_continue, name="chat-continue"),
    path(
        "chats/<str:chat_id>/turns/<int:index>/feedback",
        modes_api.chat_feedback,
        name="chat-feedback",
    ),
    path("chats/<str:chat_id>/stream", modes_api.chat_stream, name="chat-stream"),
    path("battles/<str:battle_id>", api.battle_detail, name="battle-detail"),
    path("battles/<str:battle_id>/turns", api.battle_continue, name="battle-continue"),
    path("battles/<str:battle_id>/regenerate", api.battle_regenerate, name="battle-regenerate"),
    path("battles/<str:battle_id>/vote", api.battle_vote, name="battle-vote"),
    path("battles/<str:battle_id>/stream", api.battle_stream, name="battle-stream"),
    path("battles/<str:battle_id>/turns/<int:index>/image", api.battle_image, name="battle-image"),
    path("", include("leaderboard.pages.urls")),
    path("staff/", include("leaderboard.data.urls_export")),
    path("healthz", views.healthz, name="healthz"),
    path("readyz", views.readyz, name="readyz"),
    path("metrics", views.metrics_view, name="metrics"),
    path("admin/", admin.site.urls),
]

handler404 = "arena.views.not_found"
handler500 = "arena.views.server_error"
