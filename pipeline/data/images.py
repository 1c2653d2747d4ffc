"""Decoding one image file into what the pipeline trains on, or a reason why not.

Photos and colour label maps become 8-bit RGB; class-id maps stay single channel and are only ever
resized with nearest neighbour (interpolating class ids would invent classes).
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageFile, ImageOps

ORIENTATION = 0x0112  # the EXIF orientation tag
DEFAULT_MAX_PIXELS = 89478485  # Pillow's own decompression-bomb limit (params.yaml's prepare.max_pixels)
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".gif"}


def sources(folder: Path) -> list[Path]:
    """The files of a folder to try as images, hidden ones (.DS_Store, ._*) left out; none for a missing folder."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if not p.name.startswith("."))


class RejectedImage(Exception):
    """The file cannot be used; str(e) is the reason written to the manifest."""


def _open(path: Path, max_pixels: int) -> Image.Image:
    if path.suffix.lower() not in IMAGE_SUFFIXES:
        raise RejectedImage(f"not an image file (suffix {path.suffix or 'none'})")
    if path.stat().st_size == 0:
        raise RejectedImage("empty file (0 bytes)")
    return _load(path, max_pixels)


def _load(source: Path | BinaryIO, max_pixels: int) -> Image.Image:
    """Decode fully, refusing more than max_pixels pixels and any truncated or corrupt data."""
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        with warnings.catch_warnings():
            # Pillow only warns between max_pixels and 2x; treat the warning as the refusal it is.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            old_limit = Image.MAX_IMAGE_PIXELS
            Image.MAX_IMAGE_PIXELS = max_pixels
            try:
                img = Image.open(source)
                img.load()
            finally:
                Image.MAX_IMAGE_PIXELS = old_limit
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise RejectedImage(f"more than prepare.max_pixels={max_pixels} pixels (decompression bomb guard)") from None
    except Exception as e:  # Pillow raises many types for corrupt data: all mean "unreadable"
        raise RejectedImage(f"unreadable image ({type(e).__name__}: {e})") from None
    return img


def to_rgb(img: Image.Image) -> Image.Image:
    """Any Pillow mode -> 8-bit RGB. Transparency is composited on white; 16-bit is rescaled, not clipped."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        a = np.asarray(img, dtype=np.float64)
        top = 65535.0 if img.mode.startswith("I;16") or a.max() > 255 else 255.0
        return Image.fromarray((np.clip(a / top, 0, 1) * 255 + 0.5).astype(np.uint8)).convert("RGB")
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")


def upright(img: Image.Image) -> Image.Image:
    """Apply the EXIF orientation tag: a phone's portrait photo is stored sideways with a tag saying so."""
    return ImageOps.exif_transpose(img) if img.getexif().get(ORIENTATION, 1) != 1 else img


def decode_rgb(path: Path, max_pixels: int) -> Image.Image:
    """Decode a photo or colour label map as 8-bit RGB, upright."""
    return to_rgb(upright(_open(path, max_pixels)))


def decode_rgb_bytes(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """decode_rgb for an encoded image held in memory (an MLflow model's input)."""
    if not data:
        raise RejectedImage("empty image (0 bytes)")
    return to_rgb(upright(_load(io.BytesIO(data), max_pixels)))


def fit(img: Image.Image, *, size: int, min_size: int) -> Image.Image:
    """Check the size and resize to size x size (bicubic, as the authors' `load_size` resize)."""
    if min(img.size) < min_size:
        raise RejectedImage(f"too small: {img.size[0]}x{img.size[1]}, shorter side below prepare.min_size={min_size}")
    return img if img.size == (size, size) else img.resize((size, size), Image.BICUBIC)


def load_label_map(path: Path, *, size: int, max_pixels: int) -> Image.Image:
    """Decode a class-id map (one channel of ids) and resize with nearest neighbour."""
    img = upright(_open(path, max_pixels))
    if img.mode not in ("L", "P", "I;16", "I"):
        raise RejectedImage(f"class-id map must have one channel, got mode {img.mode}")
    ids = np.asarray(img)
    if ids.max(initial=0) > 255:
        raise RejectedImage(f"class id {int(ids.max())} does not fit 8 bits")
    img = Image.fromarray(ids.astype(np.uint8), mode="L")
    return img if img.size == (size, size) else img.resize((size, size), Image.NEAREST)


def split_aligned(img: Image.Image) -> tuple[Image.Image, Image.Image]:
    """pix2pix archives store a pair side by side: (left half, right half)."""
    w, h = img.size
    if w != 2 * h:
        raise RejectedImage(f"aligned pair expected (width = 2 x height), got {w}x{h}")
    return img.crop((0, 0, w // 2, h)), img.crop((w // 2, 0, w, h))
