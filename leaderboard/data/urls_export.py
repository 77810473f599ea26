"""Staff pages of the leaderboard app; included under ``staff/`` by ``arena/urls.py``."""

from __future__ import annotations

from django.urls import path

from leaderboard.data import export_views

urlpatterns = [
    path("export", export_views.export_page, name="staff-export"),
]
