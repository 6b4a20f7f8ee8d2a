"""What OpenSlide's rule costs the direct reader: tiles/s with and without the per-tile OpenSlide check.

The direct reader (fwrd.slide.tiff_tiles) decodes tiled-JPEG levels with libjpeg-turbo through imagecodecs,
which never reports libjpeg's corrupt-data warnings; fwrd.slide.strict_decode therefore has OpenSlide
decode each file tile once, at one pixel, first. This reads every level-0 tile of a slide, aligned (one
file tile per read, the fwrd-run case for model tiles up to the file tile), in one thread, three ways,
interleaved over `--repeats` rounds: the direct reader as it runs (checked), the same reader with the
check switched off (what it cost before), and the OpenSlide reader.

    python benchmarks/strict_decode.py --size 4096 --repeats 5 --json benchmarks/results/strict-decode.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from fwrd.benchmark.machine import describe_machine
from fwrd.slide.synthetic import make_synthetic_slide
from fwrd.slide.tile_reader import open_tile_reader


class NoCheck:
    """Stands in for TileChecker: the direct reader as it was before the check."""

    def check(self, index: int) -> None:
        return None

    def close(self) -> None:
        return None


def read_all(slide: Path, mode: str) -> tuple[float, int]:
    """(seconds, tiles) to read every level-0 file tile aligned, with a fresh reader (no warm caches)."""
    reader = open_tile_reader(slide, 0, prefer_direct=(mode != "openslide"))
    if mode == "unchecked":
        reader._checker.close()
        reader._checker = NoCheck()
    tw, th = (256, 256) if mode == "openslide" else (reader.tile_w, reader.tile_h)
    width, height = (reader.width, reader.height) if mode != "openslide" else reader.slide.dimensions
    began = time.perf_counter()
    tiles = 0
    for y in range(0, height - th + 1, th):
        for x in range(0, width - tw + 1, tw):
            reader.read(x, y, tw)
            tiles += 1
    seconds = time.perf_counter() - began
    reader.close()
    return seconds, tiles


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--slide", type=Path, help="a slide with a tiled-JPEG level 0 (default: a synthetic one)")
    parser.add_argument("--size", type=int, default=4096, help="synthetic slide side, px")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        slide = args.slide or make_synthetic_slide(Path(tmp) / "bench.svs", width=args.size, height=args.size,
                                                   seed=0).path
        rates: dict[str, list[float]] = {"checked": [], "unchecked": [], "openslide": []}
        tiles = 0
        for _ in range(args.repeats):
            for mode in rates:
                seconds, tiles = read_all(slide, mode)
                rates[mode].append(tiles / seconds)
    summary = {mode: {"median": statistics.median(v), "min": min(v), "max": max(v)} for mode, v in rates.items()}
    cost_ms = 1e3 * (1 / summary["checked"]["median"] - 1 / summary["unchecked"]["median"])
    result = {"machine": describe_machine(), "slide": str(args.slide or f"synthetic {args.size}px svs"),
              "tiles": tiles, "repeats": args.repeats, "tiles_per_s": summary, "check_ms_per_tile": cost_ms}
    for mode, s in summary.items():
        print(f"{mode:>10}: {s['median']:8.1f} tiles/s [{s['min']:.1f}-{s['max']:.1f}]")
    print(f"the check costs {cost_ms:.2f} ms per tile")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
