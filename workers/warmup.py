"""Load a worker's in-process models when it starts, so the first visitor does not wait for it."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from pathlib import Path

from arena.models import ArenaModel, Backend

log = logging.getLogger(__name__)


def local_models_warm(queues: Iterable[str]) -> list[str]:
    """Load every enabled local model whose queue this worker consumes; returns their names."""
    from workers.backends.base import BackendError

    wanted = set(queues)
    warmed = []
    for model in ArenaModel.objects.filter(enabled=True, backend=Backend.LOCAL):
        if model.queue not in wanted:
            continue
        # Imported only here: a worker of HTTP models never loads torch (about 300 MB).
        from workers.backends.local import load_model

        try:
            load_model(
                Path(model.options["path"]),
                device=model.options.get("device", "cpu"),
                dtype=model.options.get("dtype"),
            )
            warmed.append(model.name)
        except (BackendError, KeyError) as exc:
            # The generation will fail with the same error, where the visitor sees it.
            log.warning("could not preload %s: %s", model.name, exc)
    log.info("preloaded local models: %s", ", ".join(warmed) or "none")
    return warmed


def local_models_warm_in_background(queues: Iterable[str]) -> None:
    # A thread: the worker starts consuming at once; a task that arrives meanwhile waits on the
    # backend's load lock instead of loading the model a second time.
    threading.Thread(
        target=local_models_warm, args=(list(queues),), name="warmup", daemon=True
    ).start()
