"""Patch images (PNG, JPEG, TIFF files of normal/ and tumor/ folders) read with their size checked first.

Pillow decodes what a file's header claims: a 519 KB PNG of 13000 x 13000 px costs 2.4 GB before any
size check runs, and above 179 M px Pillow raises its own DecompressionBombError (a traceback, not a
line). `Image.open` reads only the header, so the size is checked there, before a pixel is decoded.

    rgb = read_patch_rgb(Path("patches/tumor/0001.png"), side=256)  # uint8 [256, 256, 3]
"""

from __future__ import annotations

import warnings
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from fwrd.errors import DataError


def read_patch_rgb(path: Path, side: int, purpose: str = "the patches are") -> np.ndarray:
    """uint8 RGB [side, side, 3] of the image at `path`; DataError (one line) when it is not a readable
    image or not `side` x `side` px, decided from its header alone."""
    try:
        with _opened(path) as image:
            width, height = image.size
            if (width, height) != (side, side):
                raise DataError(f"{path}: {width}x{height} px, but {purpose} {side}x{side} px")
            return np.asarray(image.convert("RGB"))
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        raise DataError(f"{path}: not a readable image ({' '.join(str(exc).split())})") from None


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) from an image's header (nothing decoded); DataError when it is not an image."""
    try:
        with _opened(path) as image:
            return image.size
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        raise DataError(f"{path}: not a readable image ({' '.join(str(exc).split())})") from None


@contextmanager
def _opened(path: Path):
    """Image.open without Pillow's decompression-bomb warning: the size is checked before decoding anyway."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        image = Image.open(path)
    with image:
        yield image
