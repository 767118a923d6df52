"""One image's bytes -> the greyscale PNG bytes the data-stage layout stores.

The rule (the stage README says it too):

- PNG, JPEG and WebP are read (by their content, not their name); anything else is ``unreadable``;
- the EXIF orientation of a photo is applied;
- colour becomes greyscale with Pillow's ``convert("L")`` (ITU-R 601-2 luma); an alpha channel is
  dropped; 16-bit greyscale keeps its 8 high bits;
- an image whose longer side is above ``max_side`` is shrunk to that side (Lanczos, aspect kept;
  JPEGs are first decoded at a reduced scale with ``draft``); any smaller size is kept as it is.
  Embed's preprocessing resizes each image's shorter side and centre-crops, so any size reaches the
  model in its geometry;
- a greyscale PNG that needs no change is stored byte for byte as it arrived (after a full decode
  proved it complete); everything else is encoded again as PNG;
- more than :data:`MAX_PIXELS` pixels is ``too_large`` (checked from the header, before decoding).
"""

from __future__ import annotations

import io
from dataclasses import dataclass

from PIL import Image, ImageOps, UnidentifiedImageError

from components.ingest.sources import TOO_LARGE, UNREADABLE, Rejected

MAX_PIXELS = 64_000_000  # 8000 x 8000: refused before decoding (Pillow's own bomb limit is 89 M)
READ_FORMATS = ("PNG", "JPEG", "WEBP")
_SIXTEEN_BIT = ("I;16", "I;16B", "I;16L", "I;16N")


@dataclass(frozen=True)
class Converted:
    """The stored image and what was done to it."""

    png: bytes
    width: int
    height: int
    source_format: str  # PNG, JPEG or WEBP
    source_mode: str  # Pillow's mode of the input: L, RGB, RGBA, P, ...
    resized: bool
    reencoded: bool


def to_greyscale_png(data: bytes, max_side: int) -> Converted:
    """Apply the module's rule to one image's bytes; :class:`Rejected` when it is not a usable image."""
    try:
        img: Image.Image = Image.open(io.BytesIO(data), formats=READ_FORMATS)
    except Image.DecompressionBombError as exc:
        raise Rejected(TOO_LARGE, str(exc)) from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise Rejected(UNREADABLE, f"not a PNG, JPEG or WebP image ({exc})") from None
    fmt = str(img.format)
    mode = img.mode
    width, height = img.size
    if width * height > MAX_PIXELS:
        raise Rejected(TOO_LARGE, f"{width}x{height} pixels > {MAX_PIXELS}")
    if width < 1 or height < 1:
        raise Rejected(UNREADABLE, f"{width}x{height} pixels")
    try:
        shrink = bool(max_side) and max(width, height) > max_side
        if shrink and fmt == "JPEG":
            scale = max_side / max(width, height)
            img.draft("L", (max(1, round(width * scale)), max(1, round(height * scale))))
        img.load()
        orientation = img.getexif().get(0x0112, 1)
        if orientation not in (None, 1):
            img = ImageOps.exif_transpose(img)
        keep_bytes = fmt == "PNG" and mode == "L" and not shrink and orientation in (None, 1)
        if img.mode != "L":
            img = _greyscale(img)
        if shrink:
            img.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
        if keep_bytes:
            png = data
        else:
            buf = io.BytesIO()
            img.save(buf, format="PNG")
            png = buf.getvalue()
    except Image.DecompressionBombError as exc:
        raise Rejected(TOO_LARGE, str(exc)) from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise Rejected(UNREADABLE, f"the {fmt} data does not decode ({exc})") from None
    return Converted(png, img.width, img.height, fmt, mode, shrink, not keep_bytes)


def _greyscale(img: Image.Image) -> Image.Image:
    if img.mode in _SIXTEEN_BIT:
        return _high_byte(img)
    if img.mode in ("RGBA", "LA", "PA", "La", "RGBa") or (img.mode == "P" and "transparency" in img.info):
        img = img.convert("RGBA").convert("RGB")
    return img.convert("L")


def _high_byte(img: Image.Image) -> Image.Image:
    import numpy as np

    arr = np.asarray(img, dtype=np.uint16)
    return Image.fromarray((arr >> 8).astype(np.uint8), mode="L")
