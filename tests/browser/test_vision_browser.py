"""A vision battle in a real browser (Debian's chromium) against the real stack: uvicorn, a
Celery worker running two tiny local vision-language models, Redis. Desktop and 390x844."""

from __future__ import annotations

import io
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from playwright.sync_api import expect

from arena.models import ArenaModel, PromptImage, Vote
from tests.conftest import stop, subprocess_env, worker_start
from workers.tiny_vision import build_tiny_vision_model

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

expect.set_options(timeout=60_000)
VLMS = ("vlm-a", "vlm-b")


@pytest.fixture(scope="module")
def vision_worker(
    django_db_setup: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Path]:
    folder = build_tiny_vision_model(tmp_path_factory.mktemp("vlm") / "tiny-vlm", seed=9)
    process: subprocess.Popen[bytes] = worker_start(
        subprocess_env(), name="vision-worker", queues=[f"model.{n}" for n in VLMS]
    )
    yield folder
    stop(process)


@pytest.fixture
def vision_cast(cast: dict, vision_worker: Path) -> None:
    """The text cast plus two vision models: an image battle must draw only the latter."""
    for name in VLMS:
        ArenaModel.objects.create(
            name=name,
            display_name=f"Eye {name[-1].upper()}",
            organization="Vision Org",
            backend="local",
            vision=True,
            options={"path": str(vision_worker), "sampling": {"max_tokens": 16}},
        )


@pytest.fixture
def photo(tmp_path: Path) -> Path:
    """A JPEG with a camera name and a GPS position in its EXIF."""
    exif = Image.Exif()
    exif[0x010F] = "SecretCam"
    exif[0x8825] = {1: "N", 2: (48.0, 51.0, 24.0)}
    path = tmp_path / "holiday.jpg"
    Image.new("RGB", (120, 80), (20, 160, 90)).save(path, format="JPEG", exif=exif)
    return path


@pytest.mark.parametrize(
    "viewport", [{"width": 1280, "height": 900}, {"width": 390, "height": 844}], ids=str
)
def test_a_vision_battle_is_played_end_to_end(
    browser: Any,
    live_server_url: str,
    vision_cast: None,
    photo: Path,
    screenshot: Any,
    viewport: dict[str, int],
) -> None:
    context = browser.new_context(viewport=viewport, is_mobile=viewport["width"] < 500)
    page = context.new_page()
    blocked: list[str] = []
    page.on("console", lambda m: blocked.append(m.text) if "Content Security" in m.text else None)
    page.goto(live_server_url)
    page.set_input_files("#image", str(photo))
    expect(page.locator("#image-clear")).to_be_visible()
    page.fill("#prompt", "What is in this picture?")
    page.click("#send")

    for side in "ab":
        image = page.locator(f"#pane-{side} .message.user img.prompt-image")
        expect(image).to_be_visible()
        # Loaded (CSP allows it), from the battle's URL, which names no model.
        assert page.evaluate("(img) => img.complete && img.naturalWidth", image.element_handle())
        src = image.get_attribute("src") or ""
        assert re.fullmatch(r"/battles/[\w-]+/turns/0/image", src), src
        expect(page.locator(f"#pane-{side} [data-state]")).to_have_text(re.compile("^done"))
    assert not blocked, blocked
    # The image input is for the first prompt only.
    expect(page.locator("#image")).to_be_disabled()
    body = page.locator("body").inner_text()
    assert "Eye A" not in body and "Vision Org" not in body
    if viewport["width"] < 500:
        assert not page.evaluate("() => document.documentElement.scrollWidth > innerWidth")
    name = "21-vision-battle" + ("-narrow" if viewport["width"] < 500 else "")
    screenshot(page, name, full_page=viewport["width"] >= 500)

    # What the browser got is the stored, stripped image.
    served = page.request.get(live_server_url + src)
    assert served.ok and b"SecretCam" not in served.body()
    assert Image.open(io.BytesIO(served.body())).size == (120, 80)

    page.click("[data-vote='a']")
    expect(page.locator("[data-reveal]").first).to_contain_text(re.compile("Eye [AB]"))
    vote = Vote.objects.get()
    assert {vote.model_a.name, vote.model_b.name} == set(VLMS)
    assert PromptImage.objects.count() == 1
    context.close()
