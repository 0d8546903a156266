"""Image files of a scene, checked once up front: a truncated or undecodable frame is named with its file before
training starts, not found by a data-loading worker later (PIL's bare ``image file is truncated``)."""

from __future__ import annotations

from pathlib import Path
from typing import Tuple

from PIL import Image

from .errors import UserError

__all__ = ["readable_image_size"]


def readable_image_size(path: Path, where: str = "") -> Tuple[int, int]:
    """``(width, height)`` of the image at ``path`` after reading it whole (PNG: every chunk and its checksum,
    without decoding; other formats: decoded). Raises :class:`UserError` naming ``where`` (or the file)."""
    try:
        with Image.open(path) as im:
            size = im.size
            if im.format == "PNG":
                im.verify()
            else:
                im.load()
    except Exception as exc:  # noqa: BLE001 - PIL raises OSError, SyntaxError, ValueError... for a broken file
        raise UserError(f"{where or path}: {path} is not a readable image ({exc})") from None
    return size
