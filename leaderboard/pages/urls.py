"""Routes of the leaderboard pages and API (included at the site root by arena/urls.py)."""

from __future__ import annotations

from django.urls import path

from leaderboard.pages import views

urlpatterns = [
    path("leaderboard", views.leaderboard_page, name="leaderboard"),
    path("leaderboard/topics", views.topics_page, name="leaderboard-topics"),
    path("leaderboard/models/<str:name>", views.model_page, name="leaderboard-model"),
    path("api/leaderboard", views.api_leaderboard, name="api-leaderboard"),
    path("api/leaderboard.csv", views.api_leaderboard_csv, name="api-leaderboard-csv"),
    path("api/models/<str:name>", views.api_model, name="api-model"),
    path("api/rank", views.api_rank, name="api-rank"),
]
