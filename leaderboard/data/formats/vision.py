"""The ``vision-arena`` format: battles whose first prompt had an image, in the layout of lmarena's
vision arena releases (VisionArena-Battle): the ``arena`` record (conversations as text) plus an
``images`` list. FastChat's vision logs keep images out of the conversation, as files named by
a hash of the image; so do we: each entry names ``images/<sha256>.<ext>`` in the export folder
(written by the exporter next to ``data/``) and the SHA-256 of the file's bytes.

The vote row carries ``image_sha256`` and ``image_mime`` (the first turn's image, empty without
one), read by the exporter only for this format. No Django import.
"""

from __future__ import annotations

import pyarrow as pa

from leaderboard.data.formats.records import ARENA, Options, RecordFormat, Records, Row

SKIP_NO_IMAGE = "no image in the prompt"
EXTENSIONS = {"image/png": "png", "image/jpeg": "jpg"}
IMAGE = pa.struct([("path", pa.string()), ("sha256", pa.string())])


def image_path(sha256: str, mime: str) -> str:
    """Where an exported image lies, relative to the export folder."""
    return f"images/{sha256}.{EXTENSIONS.get(mime, 'bin')}"


def _schema(options: Options) -> pa.Schema:
    return ARENA.schema(options).append(pa.field("images", pa.list_(IMAGE)))


def _convert(row: Row, options: Options) -> Records | str:
    sha256 = row.get("image_sha256")
    if not sha256:
        return SKIP_NO_IMAGE
    records = ARENA.convert(row, options)
    assert not isinstance(records, str)
    images = [{"path": image_path(sha256, row["image_mime"]), "sha256": sha256}]
    return [{**record, "images": images} for record in records]


VISION_ARENA = RecordFormat(
    name="vision-arena",
    summary="one record per vision battle (an image in the first prompt) in the layout of "
    "lmarena's vision arena releases; the images are files under images/",
    needs_text=False,
    schema=_schema,
    convert=_convert,
    columns={
        **ARENA.columns,
        "images": "the prompt's images, each {path, sha256}: path is images/<sha256>.<ext> in "
        "this folder (the image as the models got it: re-encoded, without metadata)",
    },
    task_categories=("visual-question-answering",),
    tags=("chatbot-arena", "vision-arena", "human-feedback", "pairwise-comparison"),
)
