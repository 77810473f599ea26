"""The vision-arena export: vision battles only, each with its image as a hash-named file."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import pytest
from PIL import Image

from arena import services
from arena.models import ArenaModel, Battle, Response
from arena.streams import redis_client
from leaderboard.data.export import preferences_export
from leaderboard.data.formats.vision import SKIP_NO_IMAGE
from tests.conftest import answer_play
from tests.leaderboard.test_export import load, read_split


def _voted(battle: Battle, choice: str) -> Battle:
    for response in Response.objects.filter(turn__battle=battle):
        answer_play(response, "an answer")
    services.vote_record(battle=battle, visitor_id=battle.visitor_id, choice=choice)
    return battle


@pytest.fixture
def battles(db: None) -> dict[str, Battle]:
    redis_client().flushdb()
    for name in ("eye-1", "eye-2"):
        ArenaModel.objects.create(
            name=name,
            display_name=name,
            backend="openai",
            vision=True,
            options={"base_url": "http://127.0.0.1:9/v1", "served_model_name": "m"},
        )
    photo = io.BytesIO()
    exif = Image.Exif()
    exif[0x010F] = "SecretCam"
    Image.new("RGB", (12, 10), (9, 99, 199)).save(photo, format="JPEG", exif=exif)
    with_image = services.battle_create(
        visitor_id="v1", prompt="What is this?", image=photo.getvalue()
    )
    text_only = services.battle_create(visitor_id="v2", prompt="Hello there")
    return {"image": _voted(with_image, "a"), "text": _voted(text_only, "b")}


@pytest.mark.parametrize("file_format", ["jsonl", "parquet"])
def test_vision_export_has_the_image_battles_and_their_files(
    battles: dict[str, Battle], tmp_path: Path, file_format: str
) -> None:
    out = tmp_path / file_format
    result = preferences_export(output=out, fmt="vision-arena", file_format=file_format)
    assert result.records == 1
    assert result.skipped == {SKIP_NO_IMAGE: 1}
    [record] = read_split(out)
    assert record["question_id"] == battles["image"].id
    assert record["winner"] == "model_a"
    assert record["conversation_a"][0] == {"role": "user", "content": "What is this?"}
    [image] = record["images"]
    data = (out / image["path"]).read_bytes()
    assert image["path"] == f"images/{image['sha256']}.jpg"
    assert hashlib.sha256(data).hexdigest() == image["sha256"]
    assert b"SecretCam" not in data
    assert [p.name for p in (out / "images").iterdir()] == [f"{image['sha256']}.jpg"]
    assert load(out)["train"].num_rows == 1
    assert "images" in (out / "README.md").read_text()
