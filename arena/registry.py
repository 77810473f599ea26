"""models.toml -> ArenaModel rows.

The file is the source of truth for which models fight: `registry_sync` creates and updates
rows from it and disables (never deletes) rows whose entry is gone, so old battles keep their
models. Errors name the entry and the field.

    [[models]]
    name = "qwen-7b"                  # slug, unique
    display_name = "Qwen2.5 7B Instruct"
    organization = "Alibaba"
    license = "Apache-2.0"
    backend = "openai"                # "local" or "openai"
    sampling_weight = 1.0
    max_concurrency = 8
    context_tokens = 8192             # optional: prompt + answer; longer conversations get a 4xx
    enabled = true
    system_prompt = "You are a helpful assistant."
    [models.options]                  # backend options
    base_url = "http://gpu1:8001/v1"
    [models.sampling]                 # sampling defaults
    temperature = 0.7
    max_tokens = 1024
    [models.vllm]                     # optional: how `manage.py serve_model` hosts it
    model = "Qwen/Qwen2.5-7B-Instruct"  # Hugging Face id or local folder
    port = 8001
    gpu_memory_utilization = 0.45
    max_model_len = 8192
    dtype = "bfloat16"
    extra_args = ["--enable-prefix-caching"]
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import transaction

from arena.models import ArenaModel, Backend

_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,99}$")
_KNOWN_FIELDS = {
    "name",
    "display_name",
    "organization",
    "license",
    "description",
    "backend",
    "options",
    "sampling",
    "system_prompt",
    "sampling_weight",
    "max_concurrency",
    "context_tokens",
    "enabled",
    "demo",
    "vision",
    "image_only",
    "vllm",
}
_SAMPLING_FIELDS: dict[str, tuple[type, ...]] = {
    "temperature": (int, float),
    "top_p": (int, float),
    "max_tokens": (int,),
    "stop": (list,),
    "seed": (int,),
    "extra": (dict,),
}

# The `[models.vllm]` table: (types, required). `model` is a Hugging Face id or a folder.
_VLLM_FIELDS: dict[str, tuple[tuple[type, ...], bool]] = {
    "model": ((str,), True),
    "port": ((int,), False),
    "gpu_memory_utilization": ((int, float), False),
    "max_model_len": ((int,), False),
    "dtype": ((str,), False),
    "extra_args": ((list,), False),
}


DATA_DIR_PLACEHOLDER = "${ARENA_DATA_DIR}"


class RegistryError(ValueError):
    """models.toml is malformed; the message names the entry and the field."""


@dataclass(frozen=True)
class ModelEntry:
    name: str
    display_name: str
    backend: str
    organization: str = ""
    license: str = ""
    description: str = ""
    sampling_weight: float = 1.0
    max_concurrency: int = 4
    enabled: bool = True
    # Takes images in the prompt: drawn for vision battles (arena/images.py).
    vision: bool = False
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SyncResult:
    created: list[str]
    updated: list[str]
    disabled: list[str]


def _fail(index: int, name: object, fieldname: str, problem: str) -> RegistryError:
    who = f"entry {index + 1}" + (f" ({name!r})" if isinstance(name, str) else "")
    return RegistryError(f"models file: {who}, field {fieldname!r}: {problem}")


def _check(
    raw: dict[str, Any], index: int, key: str, types: tuple[type, ...], required: bool
) -> Any:
    name = raw.get("name")
    if key not in raw:
        if required:
            raise _fail(index, name, key, "is required")
        return None
    value = raw[key]
    # bool is an int in Python; a weight of `true` is a typo, not a number.
    if isinstance(value, bool) and bool not in types:
        raise _fail(index, name, key, f"must be {_type_names(types)}, not a boolean")
    if not isinstance(value, types):
        raise _fail(index, name, key, f"must be {_type_names(types)}, not {type(value).__name__}")
    return value


def _type_names(types: tuple[type, ...]) -> str:
    names = {int: "an integer", float: "a number", str: "a string", bool: "a boolean"}
    names |= {list: "a list", dict: "a table"}
    return " or ".join(names.get(t, t.__name__) for t in types)


def registry_parse(text: str, *, base_dir: Path) -> list[ModelEntry]:
    """Parse a models file's text; relative local paths resolve against `base_dir`."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RegistryError(f"models file is not valid TOML: {exc}") from None
    raw_entries = data.get("models")
    if not isinstance(raw_entries, list) or not raw_entries:
        raise RegistryError("models file: expected at least one [[models]] entry")
    entries: list[ModelEntry] = []
    seen: set[str] = set()
    for index, raw in enumerate(raw_entries):
        entries.append(_parse_entry(raw, index, base_dir))
        if entries[-1].name in seen:
            raise _fail(index, entries[-1].name, "name", "is used by an earlier entry")
        seen.add(entries[-1].name)
    return entries


def _parse_entry(raw: dict[str, Any], index: int, base_dir: Path) -> ModelEntry:
    name = _check(raw, index, "name", (str,), True)
    if not _NAME_RE.match(name):
        raise _fail(index, name, "name", "use lowercase letters, digits, '.', '_' or '-'")
    unknown = sorted(set(raw) - _KNOWN_FIELDS)
    if unknown:
        raise _fail(index, name, unknown[0], "is not a known field")
    display_name = _check(raw, index, "display_name", (str,), True)
    backend = _check(raw, index, "backend", (str,), True)
    if backend not in Backend.values:
        raise _fail(index, name, "backend", f"must be one of {', '.join(Backend.values)}")
    weight = _check(raw, index, "sampling_weight", (int, float), False)
    if weight is not None and weight < 0:
        raise _fail(index, name, "sampling_weight", "must be >= 0")
    concurrency = _check(raw, index, "max_concurrency", (int,), False)
    if concurrency is not None and concurrency < 1:
        raise _fail(index, name, "max_concurrency", "must be >= 1")
    options = dict(_check(raw, index, "options", (dict,), False) or {})
    context_tokens = _check(raw, index, "context_tokens", (int,), False)
    if context_tokens is not None:
        if context_tokens < 1:
            raise _fail(index, name, "context_tokens", "must be >= 1")
        # Read by arena/context.py: conversations that do not fit are refused before sending.
        options["context_tokens"] = context_tokens
    sampling = dict(_check(raw, index, "sampling", (dict,), False) or {})
    for key, value in sampling.items():
        types = _SAMPLING_FIELDS.get(key)
        if types is None:
            raise _fail(index, name, f"sampling.{key}", "is not a known sampling parameter")
        if isinstance(value, bool) or not isinstance(value, types):
            raise _fail(index, name, f"sampling.{key}", f"must be {_type_names(types)}")
    if backend == Backend.LOCAL:
        path = options.get("path")
        if not isinstance(path, str) or not path:
            raise _fail(index, name, "options.path", "is required for the local backend")
        options["path"] = str(_local_path(path, base_dir))
    if backend == Backend.OPENAI and not isinstance(options.get("base_url"), str):
        raise _fail(index, name, "options.base_url", "is required for the openai backend")
    system_prompt = _check(raw, index, "system_prompt", (str,), False)
    if system_prompt:
        options["system_prompt"] = system_prompt
    if sampling:
        options["sampling"] = sampling
    if _check(raw, index, "demo", (bool,), False):
        options["demo"] = True
    if _check(raw, index, "image_only", (bool,), False):
        # Drawn only for battles whose prompt has an image (the demo's random-weight VLMs, whose
        # text answers would run to max_tokens and void the vote).
        if not _check(raw, index, "vision", (bool,), False):
            raise _fail(index, name, "image_only", "needs vision = true")
        options["image_only"] = True
    vllm = _check(raw, index, "vllm", (dict,), False)
    if vllm is not None:
        if backend != Backend.OPENAI:
            raise _fail(index, name, "vllm", 'needs backend = "openai" (vLLM serves over HTTP)')
        options["vllm"] = _parse_vllm(vllm, index, name, base_dir)
        # `serve_model` serves it under the entry's name; the backend must ask for that name.
        options.setdefault("served_model_name", name)
    return ModelEntry(
        name=name,
        display_name=display_name,
        backend=backend,
        organization=_check(raw, index, "organization", (str,), False) or "",
        license=_check(raw, index, "license", (str,), False) or "",
        description=_check(raw, index, "description", (str,), False) or "",
        sampling_weight=float(weight if weight is not None else 1.0),
        max_concurrency=concurrency or 4,
        enabled=bool(_check(raw, index, "enabled", (bool,), False) is not False),
        vision=bool(_check(raw, index, "vision", (bool,), False)),
        options=options,
    )


def _parse_vllm(vllm: dict[str, Any], index: int, name: str, base_dir: Path) -> dict[str, Any]:
    unknown = sorted(set(vllm) - set(_VLLM_FIELDS))
    if unknown:
        raise _fail(index, name, f"vllm.{unknown[0]}", "is not a known field")
    parsed: dict[str, Any] = {}
    for key, (types, required) in _VLLM_FIELDS.items():
        if key not in vllm:
            if required:
                raise _fail(index, name, f"vllm.{key}", "is required")
            continue
        value = vllm[key]
        if isinstance(value, bool) or not isinstance(value, types):
            raise _fail(index, name, f"vllm.{key}", f"must be {_type_names(types)}")
        parsed[key] = value
    if not parsed["model"]:
        raise _fail(index, name, "vllm.model", "must not be empty")
    # A relative folder resolves like a local path; a Hugging Face id ("org/model") is kept.
    local = _local_path(parsed["model"], base_dir)
    if parsed["model"].startswith((".", "/", DATA_DIR_PLACEHOLDER)) or local.is_dir():
        parsed["model"] = str(local)
    port = parsed.get("port")
    if port is not None and not 1 <= port <= 65535:
        raise _fail(index, name, "vllm.port", "must be between 1 and 65535")
    fraction = parsed.get("gpu_memory_utilization")
    if fraction is not None:
        if not 0 < fraction <= 1:
            raise _fail(index, name, "vllm.gpu_memory_utilization", "must be in (0, 1]")
        parsed["gpu_memory_utilization"] = float(fraction)
    if parsed.get("max_model_len") is not None and parsed["max_model_len"] < 1:
        raise _fail(index, name, "vllm.max_model_len", "must be >= 1")
    if not all(isinstance(arg, str) for arg in parsed.get("extra_args", [])):
        raise _fail(index, name, "vllm.extra_args", "must be a list of strings")
    return parsed


def _local_path(path: str, base_dir: Path) -> Path:
    """A folder named in the models file. `${ARENA_DATA_DIR}` stands for the data folder (where
    `build_demo_models` puts the demo models, wherever ARENA_DATA_DIR points); any other
    relative path resolves against the file's own folder."""
    return (base_dir / path.replace(DATA_DIR_PLACEHOLDER, str(settings.DATA_DIR))).resolve()


def registry_load(path: Path) -> list[ModelEntry]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise RegistryError(f"cannot read models file {path}: {exc.strerror}") from None
    return registry_parse(text, base_dir=path.resolve().parent)


@transaction.atomic
def registry_sync(entries: list[ModelEntry]) -> SyncResult:
    """Create or update a row per entry; disable rows whose entry is gone (never delete)."""
    created: list[str] = []
    updated: list[str] = []
    for entry in entries:
        values = {
            "display_name": entry.display_name,
            "organization": entry.organization,
            "license": entry.license,
            "description": entry.description,
            "backend": entry.backend,
            "options": entry.options,
            "sampling_weight": entry.sampling_weight,
            "max_concurrency": entry.max_concurrency,
            "enabled": entry.enabled,
            "vision": entry.vision,
            "in_registry": True,
        }
        row, was_created = ArenaModel.objects.get_or_create(name=entry.name, defaults=values)
        if was_created:
            created.append(entry.name)
            continue
        changed = [key for key, value in values.items() if getattr(row, key) != value]
        if changed:
            for key in changed:
                setattr(row, key, values[key])
            row.save(update_fields=[*changed, "updated_at"])
            updated.append(entry.name)
    gone = ArenaModel.objects.filter(in_registry=True).exclude(name__in=[e.name for e in entries])
    disabled = sorted(gone.values_list("name", flat=True))
    gone.update(in_registry=False, enabled=False)
    return SyncResult(created=created, updated=updated, disabled=disabled)
