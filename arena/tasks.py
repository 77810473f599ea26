"""Celery tasks of the arena: thin wrappers around its services."""

from __future__ import annotations

from django.conf import settings

from arena.models import SamplingPolicy
from arena.sampling_plan import sampling_plan_refresh
from workers import app


@app.task(ignore_result=True)
def refresh_sampling_plan() -> int | None:
    """Precompute the adaptive policy's pair probabilities (nothing to do for `weighted`)."""
    if settings.ARENA_SAMPLING_POLICY != SamplingPolicy.ADAPTIVE:
        return None
    plan = sampling_plan_refresh()
    return plan.id if plan else None
