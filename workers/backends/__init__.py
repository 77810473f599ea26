"""Model backends: the registry entry's `backend` name -> a class implementing base.Backend."""

from __future__ import annotations

from typing import Any

from workers.backends.base import Backend


def backend_for(name: str, options: dict[str, Any]) -> Backend:
    # Imported on use: the web process never needs torch, and HTTP workers never load it.
    if name == "local":
        from workers.backends.local import LocalBackend

        return LocalBackend(options)
    if name == "openai":
        from workers.backends.openai import OpenAIBackend

        return OpenAIBackend(options)
    raise ValueError(f"unknown backend {name!r}")
