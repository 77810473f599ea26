"""Images in the prompt: checked by content, limited, stripped of metadata, drawn only against
models that take images, shown only to the battle's visitor (arena/images.py)."""

from __future__ import annotations

import base64
import io
import struct
import zlib
from typing import Any

import numpy as np
import pytest
from django.test import Client
from PIL import Image

from arena import images, selectors, services
from arena.errors import InvalidInput
from arena.models import ArenaModel, PromptImage, Response
from arena.streams import redis_client

GPS_TAG = 0x8825
MAKE_TAG = 0x010F


def photo_with_exif(size: tuple[int, int] = (40, 30)) -> bytes:
    """A JPEG that carries a camera make and a GPS position, rotated by its EXIF orientation."""
    image = Image.new("RGB", size, (200, 30, 30))
    exif = Image.Exif()
    exif[MAKE_TAG] = "SecretCam"
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    exif[GPS_TAG] = {1: "N", 2: (48.0, 51.0, 24.0), 3: "E", 4: (2.0, 21.0, 3.0)}
    out = io.BytesIO()
    image.save(out, format="JPEG", exif=exif)
    return out.getvalue()


def png_bytes(size: tuple[int, int] = (16, 12), mode: str = "RGB", **info: Any) -> bytes:
    out = io.BytesIO()
    from PIL import PngImagePlugin

    meta = PngImagePlugin.PngInfo()
    for key, value in info.items():
        meta.add_text(key, value)
    Image.new(mode, size, (10, 20, 30, 255)[: len(mode)]).save(out, format="PNG", pnginfo=meta)
    return out.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height but that holds almost no data: a bomb's shape."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


# --- checking and normalising ------------------------------------------------------------------


def test_exif_is_stripped_and_its_orientation_applied_to_the_pixels() -> None:
    raw = photo_with_exif((40, 30))
    assert b"SecretCam" in raw
    clean = images.image_normalise(raw)
    assert clean.mime == "image/jpeg"
    assert b"SecretCam" not in clean.data
    with Image.open(io.BytesIO(clean.data)) as reread:
        assert not reread.getexif(), "no EXIF at all in the stored image"
        assert "exif" not in reread.info and "icc_profile" not in reread.info
        # Orientation 6: the 40x30 photo is shown upright as 30x40.
        assert reread.size == (30, 40)
    assert (clean.width, clean.height) == (30, 40)


def test_png_text_chunks_are_dropped() -> None:
    raw = png_bytes(Author="Jane Doe, 12 Secret Street")
    clean = images.image_normalise(raw)
    assert clean.mime == "image/png"
    assert b"Secret Street" not in clean.data
    with Image.open(io.BytesIO(clean.data)) as reread:
        assert reread.format == "PNG" and reread.size == (16, 12)


def test_type_is_read_from_the_content_not_the_name_or_declared_type() -> None:
    # A PNG declared as JPEG in its data: URL is stored as the PNG it is.
    url = "data:image/jpeg;base64," + base64.b64encode(png_bytes()).decode()
    data = images.image_decode_upload(url)
    assert data is not None
    assert images.image_normalise(data).mime == "image/png"
    # Text declared as an image is refused.
    fake = "data:image/png;base64," + base64.b64encode(b"<svg onload=alert(1)>").decode()
    fake_bytes = images.image_decode_upload(fake)
    assert fake_bytes is not None
    with pytest.raises(InvalidInput, match="not an image"):
        images.image_normalise(fake_bytes)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"GIF89a",  # a truncated header
        png_bytes()[:40],  # a truncated file
        b"BM" + b"\x00" * 100,  # a damaged BMP
    ],
)
def test_damaged_or_empty_files_are_refused_with_a_message(data: bytes) -> None:
    with pytest.raises(InvalidInput):
        images.image_normalise(data)


def test_an_accepted_container_of_a_refused_kind_is_named() -> None:
    out = io.BytesIO()
    Image.new("RGB", (4, 4)).save(out, format="TIFF")
    with pytest.raises(InvalidInput, match="TIFF"):
        images.image_normalise(out.getvalue())


def test_too_many_bytes_is_refused(settings: Any) -> None:
    settings.ARENA_MAX_IMAGE_BYTES = 2048
    noisy = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(noisy).save(out, format="PNG")
    assert len(out.getvalue()) > 2048
    with pytest.raises(InvalidInput, match="too large"):
        images.image_normalise(out.getvalue())


def test_a_decompression_bomb_is_refused_from_its_header(settings: Any) -> None:
    settings.ARENA_MAX_IMAGE_PIXELS = 1_000_000
    bomb = png_header_only(50_000, 50_000)  # 2.5 billion pixels claimed in under 200 bytes
    assert len(bomb) < 200
    with pytest.raises(InvalidInput, match="too many pixels"):
        images.image_normalise(bomb)
    with pytest.raises(InvalidInput, match="too many pixels"):
        images.image_normalise(png_bytes((1001, 1000)))
    assert images.image_normalise(png_bytes((1000, 1000))).width == 1000


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (12, "must be a string"),
        ("data:image/png,notbase64", "base64 data: URL"),
        ("%%%not base64%%%", "not valid base64"),
    ],
)
def test_bad_uploads_are_refused_with_a_message(value: object, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        images.image_decode_upload(value)


# --- battles ----------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _fresh_rate_limits() -> None:
    redis_client().flushdb()


@pytest.fixture
def mixed_cast(db: None) -> dict[str, ArenaModel]:
    """Two text-only models and two that take images (OpenAI-compatible; nothing is called)."""
    options = {"base_url": "http://127.0.0.1:9/v1", "served_model_name": "m"}
    return {
        name: ArenaModel.objects.create(
            name=name, display_name=name, backend="openai", options=options, vision=vision
        )
        for name, vision in (("text-1", False), ("text-2", False), ("eye-1", True), ("eye-2", True))
    }


def test_an_image_battle_draws_only_models_that_take_images(
    mixed_cast: dict[str, ArenaModel],
) -> None:
    rng = np.random.default_rng(0)
    drawn = set()
    for i in range(12):
        battle = services.battle_create(
            visitor_id=f"v{i}", prompt="What is this?", image=png_bytes(), rng=rng
        )
        drawn |= {battle.model_a.name, battle.model_b.name}
    assert drawn == {"eye-1", "eye-2"}
    # One stored row for the same picture sent twelve times.
    assert PromptImage.objects.count() == 1


def test_an_image_battle_without_two_vision_models_is_a_clear_4xx(
    mixed_cast: dict[str, ArenaModel],
) -> None:
    ArenaModel.objects.filter(name="eye-2").update(enabled=False)
    with pytest.raises(InvalidInput, match="take images"):
        services.battle_create(visitor_id="v", prompt="What is this?", image=png_bytes())
    assert not Response.objects.exists()
    # Without the image the text models still play.
    assert services.battle_create(visitor_id="v", prompt="Hello").model_a.name != "eye-2"


def test_the_models_get_the_stored_image_as_a_data_url_part(
    mixed_cast: dict[str, ArenaModel],
) -> None:
    battle = services.battle_create(visitor_id="v", prompt="What is this?", image=photo_with_exif())
    stored = PromptImage.objects.get()
    response = Response.objects.filter(turn__battle=battle).first()
    assert response is not None
    messages = selectors.generation_messages(response)
    assert messages[-1]["content"] == "What is this?"
    expected = "data:image/jpeg;base64," + base64.b64encode(bytes(stored.data)).decode()
    assert messages[-1]["images"] == [expected]
    # The vote's conversation stays text: the image is not copied into every vote.
    assert "images" not in selectors.battle_conversation(battle, "a")[0]


# --- the API ----------------------------------------------------------------------------------


def _client() -> tuple[Client, str]:
    client = Client(enforce_csrf_checks=True)
    client.get("/")
    return client, client.cookies["csrftoken"].value


def test_api_takes_base64_json_and_serves_the_image_to_the_owner_only(
    mixed_cast: dict[str, ArenaModel],
) -> None:
    client, token = _client()
    url = "data:image/png;base64," + base64.b64encode(png_bytes(Comment="gps 48.85")).decode()
    reply = client.post(
        "/battles",
        {"prompt": "Describe it.", "image": url},
        content_type="application/json",
        headers={"X-CSRFToken": token},
    )
    assert reply.status_code == 201, reply.content
    state = reply.json()
    image_url = state["turns"][0]["image_url"]
    assert image_url == f"/battles/{state['id']}/turns/0/image"
    assert "eye" not in image_url
    served = client.get(image_url)
    assert served.status_code == 200
    assert served["Content-Type"] == "image/png"
    assert b"gps 48.85" not in served.content
    assert Image.open(io.BytesIO(served.content)).size == (16, 12)
    # Another visitor gets nothing, and a turn without an image is a 404.
    stranger, _ = _client()
    assert stranger.get(image_url).status_code == 403
    assert client.get(f"/battles/{state['id']}/turns/1/image").status_code == 404


def test_api_takes_a_multipart_upload(mixed_cast: dict[str, ArenaModel]) -> None:
    client, token = _client()
    upload = io.BytesIO(photo_with_exif())
    upload.name = "holiday.txt"  # the name says nothing: the content decides
    reply = client.post(
        "/battles",
        {"prompt": "Describe it.", "image": upload},
        headers={"X-CSRFToken": token},
    )
    assert reply.status_code == 201, reply.content
    assert PromptImage.objects.get().mime == "image/jpeg"


@pytest.mark.parametrize(
    "image",
    ["data:image/png;base64," + base64.b64encode(b"not an image").decode(), "@@@", 5],
)
def test_api_refuses_a_bad_image_with_a_400_and_creates_nothing(
    mixed_cast: dict[str, ArenaModel], image: object
) -> None:
    client, token = _client()
    reply = client.post(
        "/battles",
        {"prompt": "Describe it.", "image": image},
        content_type="application/json",
        headers={"X-CSRFToken": token},
    )
    assert reply.status_code == 400
    assert reply.json()["error"]
    assert not Response.objects.exists()


def test_api_refuses_an_oversized_image_with_a_4xx_not_a_500(
    mixed_cast: dict[str, ArenaModel], settings: Any
) -> None:
    settings.ARENA_MAX_IMAGE_BYTES = 4096
    client, token = _client()
    big = "data:image/png;base64," + base64.b64encode(b"\x89PNG" + b"\x00" * 8000).decode()
    reply = client.post(
        "/battles",
        {"prompt": "Describe it.", "image": big},
        content_type="application/json",
        headers={"X-CSRFToken": token},
    )
    assert reply.status_code == 400
    assert "too large" in reply.json()["error"]
    # Past Django's own body limit too.
    huge = "A" * (settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 10)
    reply = client.post(
        "/battles",
        {"prompt": "Describe it.", "image": huge},
        content_type="application/json",
        headers={"X-CSRFToken": token},
    )
    assert 400 <= reply.status_code < 500
    assert not Response.objects.exists()


def test_registry_entries_say_whether_a_model_takes_images(tmp_path: Any) -> None:
    from arena.registry import RegistryError, registry_parse

    text = """
[[models]]
name = "eye"
display_name = "Eye"
backend = "openai"
vision = true
[models.options]
base_url = "http://127.0.0.1:9/v1"

[[models]]
name = "plain"
display_name = "Plain"
backend = "openai"
[models.options]
base_url = "http://127.0.0.1:9/v1"
"""
    eye, plain = registry_parse(text, base_dir=tmp_path)
    assert (eye.vision, plain.vision) == (True, False)
    with pytest.raises(RegistryError, match="'vision'"):
        registry_parse(text.replace("vision = true", 'vision = "yes"'), base_dir=tmp_path)


def test_image_only_models_never_play_a_text_battle(mixed_cast: dict[str, ArenaModel]) -> None:
    """The demo's random-weight vision models answer text with noise that runs to max_tokens."""
    for name in ("eye-1", "eye-2"):
        model = mixed_cast[name]
        model.options = {**model.options, "image_only": True}
        model.save(update_fields=["options"])
    rng = np.random.default_rng(1)
    drawn = set()
    for i in range(12):
        battle = services.battle_create(visitor_id=f"t{i}", prompt="Hello there", rng=rng)
        drawn |= {battle.model_a.name, battle.model_b.name}
    assert drawn == {"text-1", "text-2"}
    image_battle = services.battle_create(
        visitor_id="v", prompt="What is this?", image=png_bytes(), rng=rng
    )
    assert {image_battle.model_a.name, image_battle.model_b.name} == {"eye-1", "eye-2"}


def test_image_only_needs_vision_in_the_registry(tmp_path: Any) -> None:
    from arena.registry import RegistryError, registry_parse

    text = """
[[models]]
name = "eye"
display_name = "Eye"
backend = "openai"
vision = true
image_only = true
[models.options]
base_url = "http://127.0.0.1:9/v1"
"""
    (eye,) = registry_parse(text, base_dir=tmp_path)
    assert eye.options["image_only"] is True
    with pytest.raises(RegistryError, match="image_only"):
        registry_parse(text.replace("vision = true\n", ""), base_dir=tmp_path)
