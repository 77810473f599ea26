"""Health probes for models that left the sampling pool after repeated failures."""

from __future__ import annotations

import os
from pathlib import Path

import httpx

from arena.models import ArenaModel, Backend


def model_probe(model: ArenaModel, *, timeout_s: float = 5.0) -> str | None:
    """None if the model looks able to answer, else what is wrong."""
    options = model.options
    if model.backend == Backend.LOCAL:
        path = Path(str(options.get("path", "")))
        return None if (path / "config.json").is_file() else f"no model at {path}"
    base_url = str(options.get("base_url", "")).rstrip("/")
    headers = {}
    key_env = options.get("api_key_env")
    if key_env and os.environ.get(key_env):
        headers["Authorization"] = f"Bearer {os.environ[key_env]}"
    try:
        # Every OpenAI-compatible server (vLLM included) lists its models here.
        reply = httpx.get(f"{base_url}/models", headers=headers, timeout=timeout_s)
    except httpx.HTTPError as exc:
        return f"{base_url}/models: {type(exc).__name__}: {exc}"
    if reply.status_code != 200:
        return f"{base_url}/models answered HTTP {reply.status_code}"
    return None
