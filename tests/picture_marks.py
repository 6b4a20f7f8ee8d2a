"""Reading the marks a picture carries (tests only)."""

from __future__ import annotations

import numpy as np

from fwrd.runtime.outputs.legend import STAMP, STAMP_BAND, TITLE_BAND


def red_bands(picture: np.ndarray) -> int:
    """How many red stamp bands lie under the title of a picture (rows where the stamp's red fills a tenth)."""
    top = picture[TITLE_BAND - 2:TITLE_BAND + 4 * STAMP_BAND, :, :3]
    red = (np.abs(top.astype(int) - STAMP).sum(axis=2) < 30).mean(axis=1) > 0.1
    return int(np.count_nonzero(red[1:] & ~red[:-1]) + red[0])

