"""Model health: a model that keeps failing leaves the sampling pool; a probe brings it back."""

from __future__ import annotations

import logging

from django.conf import settings
from django.db.models import F
from django.utils import timezone

from arena.models import (
    ArenaModel,
)

log = logging.getLogger(__name__)


def model_health_record(*, model_id: int, ok: bool, error: str = "") -> None:
    """Count a generation's outcome; the ARENA_UNHEALTHY_AFTER-th failure in a row takes the
    model out of the sampling pool."""
    models = ArenaModel.objects.filter(id=model_id)
    if ok:
        # Filtered so that the common case (no failures) writes nothing.
        models.filter(consecutive_failures__gt=0).update(consecutive_failures=0)
        return
    models.update(consecutive_failures=F("consecutive_failures") + 1, health_error=error[:2000])
    went_down = models.filter(
        healthy=True, consecutive_failures__gte=settings.ARENA_UNHEALTHY_AFTER
    ).update(healthy=False, health_changed_at=timezone.now())
    if went_down:
        name = models.values_list("name", flat=True).get()
        log.warning(
            "model %s left the sampling pool: %s",
            name,
            error[:300],
            extra={"event": "model_unhealthy", "model": name, "error": error[:300]},
        )


def model_health_restore(*, model_id: int) -> None:
    """A probe succeeded: the model returns to the sampling pool."""
    restored = ArenaModel.objects.filter(id=model_id, healthy=False).update(
        healthy=True, consecutive_failures=0, health_error="", health_changed_at=timezone.now()
    )
    if restored:
        name = ArenaModel.objects.values_list("name", flat=True).get(id=model_id)
        log.info("model %s is healthy again", name, extra={"event": "model_healthy", "model": name})
