"""Whole-slide images without torch: reading (OpenSlide, or direct JPEG tile decoding), tissue masks,
ASAP annotations, the tile lattice, and synthetic slides for tests and the demo.

    from fwrd.slide import open_slide, tissue_mask, tile_grid
    with open_slide("tumor_001.tif") as slide:
        mask, ds = tissue_mask(slide)
        xy = tile_grid(mask, ds, slide.dimensions, tile=256, stride=64)
"""

from fwrd.slide.annotations import (
    Annotations,
    contains,
    find_annotation,
    load_asap_xml,
    rasterize,
)
from fwrd.slide.grid import DEFAULT_MIN_TISSUE, footprint_fraction, tile_grid
from fwrd.slide.reader import Slide, open_slide, snap_downsample
from fwrd.slide.tile_reader import TileReader, native_tile_size, open_tile_reader
from fwrd.slide.tissue import otsu_threshold, tissue_mask, tissue_mask_from_rgb

__all__ = [
    "Annotations", "contains", "find_annotation", "load_asap_xml", "rasterize",
    "DEFAULT_MIN_TISSUE", "footprint_fraction", "tile_grid",
    "Slide", "open_slide", "snap_downsample",
    "TileReader", "native_tile_size", "open_tile_reader",
    "otsu_threshold", "tissue_mask", "tissue_mask_from_rgb",
]
