"""ASGI entry point: `uvicorn arena.asgi:application`."""

from __future__ import annotations

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "arena.settings")

import threading

from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler
from django.core.asgi import get_asgi_application
from django.template.loader import get_template
from django.urls import get_resolver, reverse

from arena.facts import language_detector

# The language detector takes seconds to build (docs/deployment.md, capacity plan): build it
# while the process starts, so that the first vote it records does not wait for it.
threading.Thread(target=language_detector, name="language-detector-warmup", daemon=True).start()


def warm_up() -> None:
    """Build now what Django builds on a process's first request, so that no visitor waits for
    it: the URLconf with every view module it imports, the resolver's reverse index, the arena
    page's compiled template. Nothing here touches the database or Redis."""
    get_resolver().url_patterns  # noqa: B018 - imports the URLconf
    reverse("arena")
    get_template("arena/arena.html")


# Static files are served by the app itself (vendored, no CDN), so one process is a whole site;
# behind a reverse proxy, `collectstatic` and let the proxy serve /static/ instead.
application = ASGIStaticFilesHandler(get_asgi_application())
warm_up()
