"""What a slide identity over every byte costs (fwrd.slide.identity): the `--resume` key of each slide.

Writes a large tiled-JPEG TIFF (high-entropy tiles, so the file is as large as a real scan of that many
tiles), then times, interleaved over `--repeats` rounds: the full fingerprint (sha256 of every byte), the
stat shortcut `--resume` takes for a file nobody wrote since (`identify` with the recorded summary), and
the old fingerprint's three 1 MiB samples for comparison. The file was just written, so it is read from
the page cache: a cold read adds the disk's time to the full fingerprint (about size / disk bandwidth).

    python benchmarks/slide_identity.py --megabytes 800 --repeats 3 --json benchmarks/results/slide-identity.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import tempfile
import time
from pathlib import Path

import imagecodecs
import numpy as np
import tifffile

from fwrd.benchmark.machine import describe_machine
from fwrd.slide.identity import identify

SAMPLE = 1 << 20


def write_large_slide(path: Path, megabytes: int) -> Path:
    """A level-0-only tiled JPEG TIFF of about `megabytes` MB: 16 distinct noisy 512 px tiles, cycled."""
    rng = np.random.default_rng(0)
    tiles = [imagecodecs.jpeg8_encode(rng.integers(0, 256, (512, 512, 3), dtype=np.uint8), level=95)
             for _ in range(16)]
    per_tile = np.mean([len(t) for t in tiles])
    across = int(np.ceil(np.sqrt(megabytes * 1e6 / per_tile)))
    side = across * 512
    with tifffile.TiffWriter(path, bigtiff=True) as tw:
        tw.write((tiles[i % 16] for i in range(across * across)), shape=(side, side, 3), dtype=np.uint8,
                 tile=(512, 512), photometric="rgb", compression="jpeg", metadata=None)
    return path


def sampled(path: Path) -> str:
    """The old (v1) fingerprint's work: the first, middle and last MiB."""
    size = path.stat().st_size
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for offset in (0, (size - SAMPLE) // 2, size - SAMPLE):
            handle.seek(offset)
            digest.update(handle.read(SAMPLE))
    return digest.hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--megabytes", type=int, default=800)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=".") as tmp:
        path = write_large_slide(Path(tmp) / "large.tif", args.megabytes)
        size = path.stat().st_size
        timings: dict[str, list[float]] = {"full sha256": [], "stat shortcut": [], "v1 samples": []}
        recorded = None
        for _ in range(args.repeats):
            began = time.perf_counter()
            identity, stat = identify(path)
            timings["full sha256"].append(time.perf_counter() - began)
            recorded = {"slide_identity": identity, "slide_stat": stat}
            began = time.perf_counter()
            assert identify(path, recorded)[0] == identity
            timings["stat shortcut"].append(time.perf_counter() - began)
            began = time.perf_counter()
            sampled(path)
            timings["v1 samples"].append(time.perf_counter() - began)
    summary = {k: {"median_s": statistics.median(v), "min_s": min(v), "max_s": max(v)} for k, v in timings.items()}
    gb_per_s = size / 1e9 / summary["full sha256"]["median_s"]
    for name, s in summary.items():
        print(f"{name:>14}: {s['median_s'] * 1e3:10.2f} ms [{s['min_s'] * 1e3:.2f}-{s['max_s'] * 1e3:.2f}]")
    print(f"file {size / 1e6:.0f} MB: full fingerprint {gb_per_s:.2f} GB/s")
    if args.json:
        args.json.write_text(json.dumps({"machine": describe_machine(), "bytes": size, "repeats": args.repeats,
                                         "timings": summary, "full_gb_per_s": gb_per_s}, indent=2) + "\n")


if __name__ == "__main__":
    main()
