"""Images in the prompt: checked, normalised and stored before any model sees them.

What a visitor uploads is untrusted bytes. `image_normalise` decides what they are from their
content (Pillow opens and verifies them; the file name and the client's content type are never
asked), refuses files over ARENA_MAX_IMAGE_BYTES and images over ARENA_MAX_IMAGE_PIXELS (read
from the header, before anything is decoded, so a decompression bomb costs nothing), and
re-encodes the pixels to PNG (or JPEG for a photo) with no metadata at all: no EXIF (camera,
GPS position, time), no ICC profile, no text chunks. The EXIF orientation is applied to the
pixels first, so a phone photo is not shown on its side. `image_store` keeps the result in the
database named by the SHA-256 of the stored bytes.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from PIL import Image, ImageOps, UnidentifiedImageError

from arena.errors import InvalidInput, NotFound
from arena.models import Battle, PromptImage

# What a browser can show and what vision models take; the rest (TIFF, BMP, PSD, ...) is refused.
ACCEPTED_FORMATS = frozenset({"PNG", "JPEG", "WEBP", "GIF"})
JPEG_QUALITY = 90
NO_VISION_MODELS = (
    "No two models that take images are available right now: "
    "send the prompt without the image, or try again later."
)


@dataclass(frozen=True)
class NormalisedImage:
    data: bytes
    mime: str
    width: int
    height: int

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


def image_decode_upload(value: object) -> bytes | None:
    """The bytes of a JSON body's `image`: a `data:image/...;base64,` URL or bare base64.

    None when there is no image. The declared type of a data URL is ignored, as is a file's name:
    `image_normalise` looks at the content.
    """
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise InvalidInput("The image must be a string: a data: URL or base64.")
    payload = value
    if value.startswith("data:"):
        head, sep, payload = value.partition(",")
        if not sep or not head.endswith(";base64"):
            raise InvalidInput("The image must be a base64 data: URL (data:image/png;base64,...).")
    limit = settings.ARENA_MAX_IMAGE_BYTES
    if len(payload) > limit * 4 // 3 + 4:
        raise InvalidInput(f"The image is too large: at most {limit // 1024} KiB.")
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInput("The image is not valid base64.") from None


def image_upload(body: Mapping[str, Any], files: Mapping[str, Any]) -> bytes | None:
    """The uploaded image's bytes, if any: a multipart file field `image`, or the JSON body's
    `image` (see `image_decode_upload`)."""
    upload = files.get("image")
    if upload is not None:
        limit = settings.ARENA_MAX_IMAGE_BYTES
        if upload.size > limit:
            raise InvalidInput(
                f"The image is too large: {upload.size // 1024} KiB, at most {limit // 1024} KiB."
            )
        data: bytes = upload.read()
        return data
    return image_decode_upload(body.get("image"))


def turn_image(*, battle: Battle, index: int) -> PromptImage:
    """The image of the battle's turn `index`; 404 when that turn has none."""
    turn = battle.turns.filter(index=index).select_related("image").first()
    if turn is None or turn.image is None:
        raise NotFound("This turn has no image.")
    return turn.image


def image_normalise(data: bytes) -> NormalisedImage:
    """Check `data` is an image within the limits and re-encode it without metadata.

    Raises
    ------
    InvalidInput
        Not an image of an accepted format, damaged, too many bytes or too many pixels.
    """
    limit_bytes = settings.ARENA_MAX_IMAGE_BYTES
    limit_pixels = settings.ARENA_MAX_IMAGE_PIXELS
    if not data:
        raise InvalidInput("The image is empty.")
    if len(data) > limit_bytes:
        raise InvalidInput(
            f"The image is too large: {len(data) // 1024} KiB, at most {limit_bytes // 1024} KiB."
        )
    with warnings.catch_warnings():
        # Pillow warns (and past twice its own limit raises) on huge images; ours is checked
        # below from the header, so both become one clear refusal.
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            with Image.open(io.BytesIO(data)) as probe:
                kind = probe.format
                width, height = probe.size
                if kind not in ACCEPTED_FORMATS:
                    raise InvalidInput(
                        "The file is not an image of an accepted type "
                        f"(PNG, JPEG, WebP or GIF){f'; it is {kind}' if kind else ''}."
                    )
                _pixels_check(width, height, limit_pixels)
                probe.verify()
            # verify() leaves the image unusable: open again to decode it.
            with Image.open(io.BytesIO(data)) as image:
                image.seek(0)  # an animated GIF or WebP: its first frame
                image.load()
                pixels = ImageOps.exif_transpose(image)
        except InvalidInput:
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise InvalidInput(
                f"The image has too many pixels: at most {limit_pixels:,} (width x height)."
            ) from None
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError):
            raise InvalidInput(
                "The file is not an image that can be read (PNG, JPEG, WebP or GIF)."
            ) from None
    return _encode(pixels, photo=kind == "JPEG")


def _pixels_check(width: int, height: int, limit: int) -> None:
    if width < 1 or height < 1:
        raise InvalidInput("The image has no pixels.")
    if width * height > limit:
        raise InvalidInput(
            f"The image has too many pixels: {width}x{height}, at most {limit:,} (width x height)."
        )


def _encode(image: Image.Image, *, photo: bool) -> NormalisedImage:
    """A fresh file from the pixels alone: nothing of the upload's metadata is copied."""
    has_alpha = image.mode in ("RGBA", "LA", "PA") or (
        image.mode == "P" and "transparency" in image.info
    )
    out = io.BytesIO()
    if photo and not has_alpha:
        clean = image.convert("RGB")
        clean.save(out, format="JPEG", quality=JPEG_QUALITY, optimize=True)
        mime = "image/jpeg"
    else:
        clean = image.convert("RGBA" if has_alpha else "RGB")
        clean.save(out, format="PNG", optimize=True)
        mime = "image/png"
    return NormalisedImage(data=out.getvalue(), mime=mime, width=clean.width, height=clean.height)


def image_store(image: NormalisedImage) -> PromptImage:
    """The stored row for `image`; the same image uploaded twice is stored once."""
    row, _ = PromptImage.objects.get_or_create(
        sha256=image.sha256,
        defaults={
            "mime": image.mime,
            "data": image.data,
            "width": image.width,
            "height": image.height,
        },
    )
    return row


def image_data_url(image: PromptImage) -> str:
    """The form OpenAI-compatible servers (vLLM) take in an `image_url` content part."""
    return f"data:{image.mime};base64,{base64.b64encode(bytes(image.data)).decode('ascii')}"
