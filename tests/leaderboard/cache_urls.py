"""Probe views for the leaderboard cache's rules (tests/leaderboard/test_page_cache.py): marked
cached like the leaderboard's own views, each one breaking a rule a cached reply must keep."""

from __future__ import annotations

import time

from django.http import HttpRequest, HttpResponse
from django.middleware.csrf import get_token
from django.urls import path

from leaderboard.pages.page_cache import cached

calls: list[str] = []


def _none(request: HttpRequest) -> tuple[()]:
    return ()


@cached(_none)
def who(request: HttpRequest) -> HttpResponse:
    calls.append("who")
    return HttpResponse(f"user={request.user.username or 'anonymous'}")


@cached(_none)
def token(request: HttpRequest) -> HttpResponse:
    calls.append("token")
    return HttpResponse(f"token={get_token(request)}")


@cached(_none)
def flaky(request: HttpRequest) -> HttpResponse:
    """500 on its first call, then 200; a POST answers what it was sent."""
    calls.append(request.method or "")
    if request.method == "POST":
        return HttpResponse(f"posted {len(calls)}")
    if calls.count("GET") == 1:
        return HttpResponse("broken", status=500)
    return HttpResponse(f"fine {len(calls)}")


@cached(_none)
def slow(request: HttpRequest) -> HttpResponse:
    calls.append("slow")
    time.sleep(0.05)  # long enough for concurrent requests to arrive while it builds
    return HttpResponse("built")


urlpatterns = [path("probe/who", who), path("probe/token", token), path("probe/flaky", flaky),
               path("probe/slow", slow)]  # fmt: skip
