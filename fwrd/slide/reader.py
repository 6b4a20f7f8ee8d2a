"""One open whole-slide image, read through OpenSlide (the general reader: SVS, TIFF, NDPI, MRXS, ...).

`Slide` hides OpenSlide's RGBA images and its error states: regions come back as uint8 RGB with
transparent or outside pixels painted white, and every failure a user can cause (missing file, not a
slide, truncated data) becomes a one-line `fwrd.errors` exception.

    with open_slide("tumor_001.tif", mpp=0.243) as slide:
        level = slide.level_for_mpp(0.243)
        tile = slide.read_region((1024, 2048), level, (256, 256))   # uint8 [256, 256, 3]
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import openslide

from fwrd.errors import FwrdError, InputNotFound, SlideError
from fwrd.slide.dicom import is_dicom_series, series_instance
from fwrd.slide.discover import slide_name
from fwrd.slide.tiff_level import check_level_size, check_tile_size

MAX_LEVEL_PIXELS = 100_000_000  # read_level refuses more than this (a level-0 Camelyon slide is 20 G)
DOWNSAMPLE_TOLERANCE = 0.01  # level_for_downsample accepts levels up to 1% coarser than asked
MPP_TOLERANCE = 0.10  # level_for_mpp accepts a level within 10% of the asked resolution
POW2_SNAP = 0.02  # level_downsample snaps to 2^k within 2% (padded pyramids, camelyon16.md)


def snap_downsample(downsample: float) -> float:
    """Return 2^k when `downsample` is within 2% of it, else `downsample` unchanged.

    Pyramids padded to whole tiles (ASAP, Camelyon16) make OpenSlide's downsample, the mean of the
    width and height ratios, slightly off the true 2^k; grids built on the raw value drift by pixels.
    """
    if downsample <= 0:
        raise ValueError(f"downsample must be positive, got {downsample}")
    power = 2.0 ** round(math.log2(downsample))
    return power if abs(downsample / power - 1.0) <= POW2_SNAP else float(downsample)


class PixelReadError(SlideError):
    """OpenSlide could not decode pixels (damaged tile data, truncated file); `reason` is its own message."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{path}: cannot read pixels (truncated or corrupt file?): {reason}")
        self.reason = reason


class Slide:
    """An open slide; a context manager. Not thread-safe to share: open one per thread or process."""

    def __init__(self, path: Path, handle: openslide.OpenSlide, mpp: float | None) -> None:
        self.path = path
        self.name = slide_name(path)
        self._osr: openslide.OpenSlide | None = handle
        self.dimensions: tuple[int, int] = tuple(int(v) for v in handle.dimensions)  # type: ignore[assignment]
        self.level_count: int = int(handle.level_count)
        self.level_dimensions: list[tuple[int, int]] = [(int(w), int(h)) for w, h in handle.level_dimensions]
        self.level_downsamples: list[float] = [float(d) for d in handle.level_downsamples]
        self.properties: dict[str, str] = dict(handle.properties)
        self.vendor: str = self.properties.get(openslide.PROPERTY_NAME_VENDOR, "unknown")
        self.recorded_mpp: float | None = _property_mpp(self.properties)  # what the file says
        self.mpp: float | None = mpp if mpp is not None else self.recorded_mpp  # what fwrd uses (--mpp wins)

    @property
    def mpp_source(self) -> str:
        """Where `mpp` comes from: "slide" (its metadata), "--mpp" (given), or "none"."""
        if self.mpp is None:
            return "none"
        return "slide" if self.mpp == self.recorded_mpp else "--mpp"

    def mpp_conflict(self) -> str | None:
        """One line when a given mpp contradicts the recorded one by more than 1 %, else None."""
        if self.recorded_mpp is None or self.mpp is None or abs(self.mpp / self.recorded_mpp - 1.0) <= 0.01:
            return None
        return (f"--mpp {self.mpp:g} um/px replaces the {self.recorded_mpp:g} um/px {self.path.name} records; "
                f"the reading level, areas and scale bars use {self.mpp:g}")

    # -- resource --------------------------------------------------------------------------------
    def close(self) -> None:
        """Release the OpenSlide handle; safe to call twice."""
        if self._osr is not None:
            self._osr.close()
            self._osr = None

    def __enter__(self) -> "Slide":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        w, h = self.dimensions
        return f"Slide({self.name!r}, {w}x{h}, levels={self.level_count}, vendor={self.vendor}, mpp={self.mpp})"

    @property
    def _handle(self) -> openslide.OpenSlide:
        if self._osr is None:
            raise SlideError(f"{self.path}: slide is closed")
        return self._osr

    # -- pixels ----------------------------------------------------------------------------------
    def read_region(self, location: tuple[int, int], level: int, size: tuple[int, int]) -> np.ndarray:
        """Read `size` (w, h) pixels of `level` whose top-left is `location` in level-0 pixels.

        Returns uint8 [h, w, 3] RGB. Pixels outside the slide (or transparent ones) are white, as
        they look on glass; partially transparent pixels are composited onto white.
        """
        self._check_level(level)
        w, h = int(size[0]), int(size[1])
        if w <= 0 or h <= 0:
            raise SlideError(f"{self.path}: region size must be positive, got {w}x{h}")
        try:
            image = self._handle.read_region((int(location[0]), int(location[1])), level, (w, h))
        except openslide.OpenSlideError as exc:
            raise PixelReadError(self.path, str(exc)) from None
        return rgba_to_rgb_on_white(np.asarray(image))

    def drop_tile_cache(self) -> None:
        """Keep no decoded tiles (32 MiB by default): for a handle that decodes each tile once to check it."""
        self._handle.set_cache(openslide.OpenSlideCache(0))

    def read_level(self, level: int) -> np.ndarray:
        """The whole level as uint8 RGB; refuses levels over 100 MP (use read_region or a coarser level)."""
        self._check_level(level)
        w, h = self.level_dimensions[level]
        if w * h > MAX_LEVEL_PIXELS:
            raise SlideError(
                f"{self.path}: level {level} is {w}x{h} ({w * h / 1e6:.0f} MP); refusing to read more "
                f"than {MAX_LEVEL_PIXELS / 1e6:.0f} MP at once"
            )
        return self.read_region((0, 0), level, (w, h))

    # -- geometry --------------------------------------------------------------------------------
    def level_downsample(self, level: int) -> float:
        """Level-0 pixels per pixel of `level`, snapped to 2^k when within 2% (see snap_downsample)."""
        self._check_level(level)
        return snap_downsample(self.level_downsamples[level])

    def level_for_downsample(self, downsample: float) -> int:
        """The coarsest level at least as fine as `downsample` (its downsample <= downsample * 1.01).

        Reading that level and shrinking never upsamples; the 1% slack accepts padded pyramids whose
        level 6 reports 64.3 for a nominal 64. Level 0 when every level is coarser.
        """
        if not downsample > 0:
            raise FwrdError(f"downsample must be positive, got {downsample}")
        best = 0
        for level, ds in enumerate(self.level_downsamples):
            if ds <= downsample * (1.0 + DOWNSAMPLE_TOLERANCE):
                best = level
        return best

    def level_for_mpp(self, mpp: float) -> int:
        """The level whose resolution is within 10% of `mpp` microns per pixel; SlideError otherwise."""
        if not mpp > 0:
            raise FwrdError(f"microns per pixel must be positive, got {mpp}")
        if self.mpp is None:
            raise SlideError(f"{self.path}: the slide records no microns per pixel; pass --mpp to give it")
        resolutions = [self.mpp * self.level_downsample(level) for level in range(self.level_count)]
        level = min(range(self.level_count), key=lambda i: abs(math.log(resolutions[i] / mpp)))
        if abs(resolutions[level] / mpp - 1.0) > MPP_TOLERANCE:
            have = ", ".join(f"{r:.3g}" for r in resolutions)
            raise SlideError(f"{self.path}: no level at {mpp:g} um/px (levels have {have} um/px)")
        return level

    def _check_level(self, level: int) -> None:
        if not 0 <= int(level) < self.level_count:
            raise SlideError(f"{self.path}: level {level} does not exist (the slide has {self.level_count})")


def rgba_to_rgb_on_white(rgba: np.ndarray) -> np.ndarray:
    """Composite OpenSlide's (un-premultiplied) RGBA onto white; opaque pixels are copied unchanged."""
    rgb = rgba[..., :3]
    alpha = rgba[..., 3]
    if alpha.min() == 255:
        return np.ascontiguousarray(rgb)
    a = alpha.astype(np.uint16)[..., None]
    out = (rgb.astype(np.uint16) * a + 255 * (255 - a) + 127) // 255
    return out.astype(np.uint8)


def _property_mpp(properties: dict[str, str]) -> float | None:
    value = properties.get(openslide.PROPERTY_NAME_MPP_X)
    try:
        mpp = float(value) if value is not None else None
    except ValueError:
        return None
    return mpp if mpp is not None and math.isfinite(mpp) and mpp > 0 else None


def _is_tiff(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
            magic = fh.read(4)
    except OSError:
        return False
    return magic in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")


def open_slide(path: str | Path, mpp: float | None = None) -> Slide:
    """Open a slide OpenSlide can read (a file, or a folder holding one DICOM series: fwrd.slide.dicom);
    `mpp` overrides the file's microns per pixel (level 0).

    Reads one pixel of the coarsest level so that a truncated file fails here, with one line,
    instead of in the middle of a run.
    """
    path = Path(path)
    if not path.exists():
        raise InputNotFound(f"{path}: no such file")
    opened = path
    if path.is_dir():
        if not is_dicom_series(path):
            raise SlideError(f"{path}: is a folder, not a slide (nor a folder of DICOM instances)")
        opened = series_instance(path)
    if mpp is not None:
        mpp = float(mpp)
        if not (math.isfinite(mpp) and mpp > 0):
            raise FwrdError(f"microns per pixel must be positive, got {mpp}")
    try:
        handle = openslide.OpenSlide(str(opened))
    except openslide.OpenSlideUnsupportedFormatError:
        hint = " (a TIFF, but truncated, corrupt or not tiled)" if _is_tiff(path) else ""
        raise SlideError(f"{path}: not a slide OpenSlide can read{hint}") from None
    except openslide.OpenSlideError as exc:
        raise SlideError(f"{path}: {_unsupported_codec(str(exc)) or f'corrupt or truncated slide: {exc}'}") from None
    except OSError as exc:
        raise SlideError(f"{path}: cannot open: {exc.strerror or exc}") from None
    slide = Slide(path, handle, mpp)
    try:
        _check_claims(slide)  # before OpenSlide decodes anything: its tile buffers are sized by them
        slide.read_region((0, 0), slide.level_count - 1, (1, 1))
    except PixelReadError as exc:
        slide.close()
        raise SlideError(f"{path}: corrupt or truncated slide (its pixels cannot be read: {exc.reason})") from None
    except BaseException:
        slide.close()
        raise
    return slide


def _check_claims(slide: Slide) -> None:
    """SlideError when a level or its tiles claim more pixels than any real slide has (tiff_level's limits)."""
    for level, (w, h) in enumerate(slide.level_dimensions):
        check_level_size(slide.path, w, h, f"level {level}")
        tile_w = slide.properties.get(f"openslide.level[{level}].tile-width")
        tile_h = slide.properties.get(f"openslide.level[{level}].tile-height")
        if tile_w is not None and tile_h is not None and tile_w.isdigit() and tile_h.isdigit():
            check_tile_size(slide.path, int(tile_w), int(tile_h), f"level {level}", slide.vendor)


def _unsupported_codec(message: str) -> str | None:
    """OpenSlide's "Unsupported TIFF compression: N" as a user reads it: the codec, named, is not supported."""
    prefix = "Unsupported TIFF compression: "
    if not message.startswith(prefix) or not message[len(prefix):].strip().isdigit():
        return None
    code = int(message[len(prefix):])
    try:
        import tifffile

        name = f" ({tifffile.COMPRESSION(code).name})"
    except ValueError:
        name = " (no codec registered for it)"
    return (f"unsupported codec: TIFF compression {code}{name} is not one OpenSlide decodes "
            "(it reads JPEG, JPEG 2000, LZW, deflate, ...; docs/formats.md); convert the slide")
