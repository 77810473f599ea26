"""ASGI entry point: `uvicorn arena.asgi:application`."""

from __future__ import annotations

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "arena.settings")

from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler
from django.core.asgi import get_asgi_application

# Static files are served by the app itself (vendored, no CDN), so one process is a whole site;
# behind a reverse proxy, `collectstatic` and let the proxy serve /static/ instead.
application = ASGIStaticFilesHandler(get_asgi_application())
