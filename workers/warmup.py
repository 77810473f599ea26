"""Load a worker's in-process models when it starts, so the first visitor does not wait for it."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from pathlib import Path

from arena.models import ArenaModel, Backend

log = logging.getLogger(__name__)


def _local_models(queues: Iterable[str]) -> list[ArenaModel]:
    wanted = set(queues)
    return [
        model
        for model in ArenaModel.objects.filter(enabled=True, backend=Backend.LOCAL)
        if model.queue in wanted
    ]


def local_models_warm(queues: Iterable[str]) -> list[str]:
    """Load every enabled local model whose queue this worker consumes; returns their names."""
    from workers.backends.base import BackendError

    warmed = []
    for model in _local_models(queues):
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


def local_models_warm_in_background(queues: Iterable[str]) -> threading.Thread | None:
    """Import torch here, then load the models in a thread; None when there is nothing to load.

    The import happens in the calling thread (the worker's main thread, before it consumes)
    on purpose: while one thread imports torch, `sys.modules` holds a partially initialized
    torch, and scipy peeks there (`scipy.special.logsumexp` asks whether its argument is a
    torch tensor), so a leaderboard refresh running meanwhile failed with "partially
    initialized module 'torch' has no attribute 'Tensor'".
    """
    queues = list(queues)
    if not _local_models(queues):
        return None
    import workers.backends.local  # noqa: F401  (torch and transformers, whole, in this thread)

    # A thread: the worker starts consuming at once; a task that arrives meanwhile waits on the
    # backend's load lock instead of loading the model a second time.
    thread = threading.Thread(target=local_models_warm, args=(queues,), name="warmup", daemon=True)
    thread.start()
    return thread
