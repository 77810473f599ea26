"""The staff export page: the `export_preferences` options as a form, then a streamed zip.

The dataset folder is written to a temporary directory (the same service as the command), then
zipped on the fly into the response: no zip file on disk, no whole archive in memory. Under ASGI
the body is an async iterator whose steps run the synchronous work in Django's sync thread.
"""

from __future__ import annotations

import tempfile
import zipfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

from asgiref.sync import sync_to_async
from django import forms
from django.contrib.admin.views.decorators import staff_member_required
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_http_methods

from arena.models import ArenaModel
from leaderboard.data.export import (
    FILE_FORMATS,
    FORMATS,
    ExportFilters,
    configured_categories,
    preferences_export,
)

_READ = 1 << 20


class ExportForm(forms.Form):
    format = forms.ChoiceField(choices=[(name, name) for name in FORMATS], initial="arena")
    file_format = forms.ChoiceField(choices=[(f, f) for f in FILE_FORMATS], initial="jsonl")
    since = forms.DateTimeField(required=False, help_text="UTC, e.g. 2024-05-01")
    until = forms.DateTimeField(required=False)
    models = forms.CharField(
        required=False, help_text="names, comma-separated (battles involving any)"
    )
    categories = forms.MultipleChoiceField(required=False, widget=forms.CheckboxSelectMultiple)
    languages = forms.CharField(required=False, help_text="tags, comma-separated (en, de, ...)")
    min_turns = forms.IntegerField(required=False, min_value=1)
    max_turns = forms.IntegerField(required=False, min_value=1)
    include_invalid = forms.BooleanField(required=False)
    exclude_moderated = forms.BooleanField(required=False)
    include_simulated = forms.BooleanField(required=False)
    dedup = forms.BooleanField(required=False)
    test_fraction = forms.FloatField(required=False, min_value=0.0, max_value=0.99, initial=0.0)
    seed = forms.IntegerField(required=False, initial=0)
    margin = forms.FloatField(required=False, help_text="TRL formats: a constant margin column")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        names = [c.name for c in configured_categories()]
        self.fields["categories"].choices = [(n, n) for n in names]  # type: ignore[attr-defined]

    def clean_models(self) -> list[str]:
        names = [n.strip() for n in self.cleaned_data["models"].split(",") if n.strip()]
        known = set(ArenaModel.objects.filter(name__in=names).values_list("name", flat=True))
        if missing := sorted(set(names) - known):
            raise forms.ValidationError(f"No model named {', '.join(missing)}.")
        return names

    def clean_languages(self) -> list[str]:
        return [t.strip() for t in self.cleaned_data["languages"].split(",") if t.strip()]

    def export_options(self) -> dict[str, Any]:
        data = self.cleaned_data
        filters = ExportFilters(
            since=data["since"], until=data["until"], models=data["models"],
            categories=data["categories"], languages=data["languages"],
            min_turns=data["min_turns"], max_turns=data["max_turns"],
            include_invalid=data["include_invalid"], exclude_moderated=data["exclude_moderated"],
            include_simulated=data["include_simulated"],
        )  # fmt: skip
        return {
            "fmt": data["format"],
            "file_format": data["file_format"],
            "filters": filters,
            "dedup": data["dedup"],
            "test_fraction": data["test_fraction"] or 0.0,
            "seed": data["seed"] or 0,
            "margin": data["margin"],
        }


@staff_member_required
@require_http_methods(["GET", "POST"])
def export_page(request: HttpRequest) -> HttpResponse:
    if request.method == "GET":
        return render(request, "leaderboard/export.html", {"form": ExportForm()})
    form = ExportForm(request.POST)
    if not form.is_valid():
        return render(request, "leaderboard/export.html", {"form": form}, status=400)
    options = form.export_options()
    stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
    response = StreamingHttpResponse(
        _async_chunks(_zip_chunks(options)), content_type="application/zip"
    )
    response["Content-Disposition"] = f'attachment; filename="arena-{options["fmt"]}-{stamp}.zip"'
    return response


class _Sink:
    """A write-only file for zipfile: it keeps what was written until drained (no seek, so
    zipfile writes sizes after each entry instead of going back to patch its header)."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self._offset = 0

    def write(self, data: bytes) -> int:
        self._parts.append(bytes(data))
        self._offset += len(data)
        return len(data)

    def tell(self) -> int:
        return self._offset

    def flush(self) -> None:
        pass

    def drain(self) -> Iterator[bytes]:
        if self._parts:
            yield b"".join(self._parts)
            self._parts = []


def _zip_chunks(options: dict[str, Any]) -> Iterator[bytes]:
    with tempfile.TemporaryDirectory(prefix="arena-export-") as tmp:
        folder = Path(tmp) / "dataset"
        preferences_export(output=folder, **options)
        sink = _Sink()
        archive = zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_DEFLATED)  # type: ignore[arg-type]
        with archive:
            for path in sorted(p for p in folder.rglob("*") if p.is_file()):
                name = path.relative_to(folder).as_posix()
                with archive.open(name, "w", force_zip64=True) as entry, path.open("rb") as fh:
                    while chunk := fh.read(_READ):
                        entry.write(chunk)
                        yield from sink.drain()
        yield from sink.drain()


async def _async_chunks(chunks: Iterator[bytes]) -> AsyncIterator[bytes]:
    """Each step of the synchronous generator (database reads, file writes) in the sync thread."""
    done = object()
    try:
        while (chunk := await sync_to_async(next)(chunks, done)) is not done:
            yield chunk  # type: ignore[misc]
    finally:
        # A client that went away: close the generator so the temporary folder is removed.
        await sync_to_async(chunks.close)()
