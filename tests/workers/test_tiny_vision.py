"""The tiny vision-language model and the local backend's image path (no download, CPU)."""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from arena import services
from arena.models import ArenaModel, Response, ResponseStatus
from arena.streams import redis_client
from workers.backends.base import BackendError, Delta, Finish, Message, SamplingParams
from workers.backends.local import LocalBackend
from workers.generation import generation_run
from workers.tiny_vision import build_tiny_vision_model


@pytest.fixture(scope="module")
def vision_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_vision_model(tmp_path_factory.mktemp("vlm") / "tiny-vlm", seed=5)


def data_url(colour: tuple[int, int, int]) -> str:
    out = io.BytesIO()
    Image.new("RGB", (20, 30), colour).save(out, format="PNG")
    return "data:image/png;base64," + base64.b64encode(out.getvalue()).decode()


def answer(path: Path, messages: list[Message], seed: int = 1) -> tuple[str, Finish]:
    items: Iterator[Delta | Finish] = LocalBackend({"path": str(path)}).stream(
        messages, SamplingParams(max_tokens=12, seed=seed, temperature=1.0)
    )
    collected = list(items)
    finish = collected[-1]
    assert isinstance(finish, Finish)
    return "".join(i.text for i in collected if isinstance(i, Delta)), finish


def test_the_tiny_vlm_answers_and_reads_the_pixels(vision_dir: Path) -> None:
    red = [{"role": "user", "content": "What is it?", "images": [data_url((255, 0, 0))]}]
    blue = [{"role": "user", "content": "What is it?", "images": [data_url((0, 0, 255))]}]
    text_red, finish = answer(vision_dir, red)  # type: ignore[arg-type]
    text_red_again, _ = answer(vision_dir, red)  # type: ignore[arg-type]
    text_blue, _ = answer(vision_dir, blue)  # type: ignore[arg-type]
    # 16 image tokens (one per 8x8 patch of the 32x32 input) are in the prompt.
    assert finish.prompt_tokens >= 16
    assert text_red == text_red_again, "same seed, same image: same answer"
    assert text_red != text_blue, "the answer depends on the image"


def test_the_tiny_vlm_also_answers_text_only(vision_dir: Path) -> None:
    _text, finish = answer(vision_dir, [{"role": "user", "content": "Hello"}])
    assert finish.completion_tokens >= 1


def test_a_text_model_given_an_image_is_an_error_not_a_silent_drop(tiny_model_dir: Path) -> None:
    with pytest.raises(BackendError, match="does not take images"):
        answer(tiny_model_dir, [{"role": "user", "content": "x", "images": [data_url((1, 2, 3))]}])


def test_a_vision_battle_is_answered_by_two_local_vlms(db: None, vision_dir: Path) -> None:
    redis_client().flushdb()
    for name in ("vlm-a", "vlm-b"):
        ArenaModel.objects.create(
            name=name,
            display_name=name,
            backend="local",
            vision=True,
            options={"path": str(vision_dir), "sampling": {"max_tokens": 8}},
        )
    upload = io.BytesIO()
    Image.new("RGB", (64, 48), (0, 200, 0)).save(upload, format="JPEG")
    battle = services.battle_create(
        visitor_id="v", prompt="Describe it.", image=upload.getvalue(), rng=np.random.default_rng(1)
    )
    for response in Response.objects.filter(turn__battle=battle):
        assert generation_run(response_id=response.id) is True
        response.refresh_from_db()
        assert response.status == ResponseStatus.DONE, response.error
        assert response.prompt_tokens is not None and response.prompt_tokens >= 16
