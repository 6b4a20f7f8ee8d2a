"""Small files whose claims would force gigabytes get one line, within a normal run's memory (issue 26.3,
26.6): each case runs in a subprocess whose peak RSS is measured (and whose address space is capped at
3 GiB, so that a regression fails here instead of swapping the machine)."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path

import imagecodecs
import numpy as np
import pytest
import tifffile
from PIL import Image

from hostile_files import jpeg_claiming_size, svs_claiming_tile, tiff_claiming_level

ROOT = Path(__file__).resolve().parent.parent
PEAK_MB = 400  # reading one of the tests' synthetic slides peaks at ~60 MB; fwrd-run on one at ~250 MB
ADDRESS_SPACE = 3 << 30


def _run(code: str) -> tuple[int, str, int]:
    """(exit code, last line of output, peak RSS in MB) of `code` run in a fresh interpreter."""
    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))

    # VmHWM: this interpreter's own peak. (ru_maxrss would not do: Linux carries the forking process's peak
    # across exec, so after the test process has held a model every child would "peak" at its size.)
    script = textwrap.dedent(code) + (
        "\nimport re, sys\n"
        "hwm = int(re.search(r'VmHWM:\\s+(\\d+) kB', open('/proc/self/status').read()).group(1))\n"
        "sys.stderr.write(f\"PEAK {hwm // 1024}\\n\")\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")]), "OMP_NUM_THREADS": "1",
           "OPENBLAS_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, preexec_fn=cap,
                          timeout=300)
    lines = (done.stdout + done.stderr).strip().splitlines()
    peak = int(lines[-1].split()[1]) if lines and lines[-1].startswith("PEAK") else -1
    said = [line for line in lines if not line.startswith("PEAK")]
    return done.returncode, said[-1] if said else "", peak


# reads a slide the way fwrd-run's workers do and prints the one line a user would see
READ = """
from fwrd.errors import FwrdError
from fwrd.slide.tile_reader import open_tile_reader
try:
    with open_tile_reader({path!r}, 0, prefer_direct={direct}) as reader:
        reader.read(0, 0, 512)
    print("read")
except FwrdError as exc:
    print("refused:", exc)
"""


@pytest.mark.parametrize("direct", [True, False])
@pytest.mark.parametrize("claimed", [32768, 65536])
def test_a_tile_size_claim_is_refused_before_allocating(tmp_path, claimed, direct):
    path = svs_claiming_tile(tmp_path / "big_tiles.svs", claimed)
    assert path.stat().st_size < 100_000
    code, said, peak = _run(READ.format(path=str(path), direct=direct))
    assert code == 0 and said.startswith("refused:") and f"declares {claimed}x{claimed} px tiles" in said, said
    assert 0 < peak < PEAK_MB


@pytest.mark.parametrize("direct", [True, False])
@pytest.mark.parametrize("claimed", [20000, 65500])
def test_a_jpeg_header_claim_is_refused_before_decoding(tmp_path, claimed, direct):
    path = jpeg_claiming_size(tmp_path / "big_header.svs", claimed)
    code, said, peak = _run(READ.format(path=str(path), direct=direct))
    assert code == 0 and said.startswith("refused:"), said
    assert f"claims {claimed}x{claimed} px in a 256x256 px tile" in said or "Dimensional mismatch" in said, said
    assert "tile 0 (column 0, row 0)" in said or "Dimensional mismatch" in said
    assert 0 < peak < PEAK_MB


def test_a_level_size_claim_is_refused_before_planning(tmp_path):
    path = tiff_claiming_level(tmp_path / "huge_level.tif", 1_000_000)
    assert path.stat().st_size < 2_000_000
    code, said, peak = _run(f"""
        from fwrd.errors import FwrdError
        from fwrd.config import FWRDConfig
        from fwrd.runtime.plan import plan_slide
        from fwrd.runtime.settings import RunSettings
        from fwrd.slide.reader import open_slide
        try:
            with open_slide({str(path)!r}, mpp=0.243) as slide:
                plan_slide(slide, FWRDConfig(tile_size=64, mpp=0.243), RunSettings())
            print("planned")
        except FwrdError as exc:
            print("refused:", exc)
    """)
    assert code == 0 and said.startswith("refused:") and "claims 1000000x1000000 px" in said, said
    assert 0 < peak < PEAK_MB


@pytest.mark.parametrize("side", [13000, 20000])
def test_an_oversized_patch_png_is_refused_from_its_header(tmp_path, side):
    folder = tmp_path / "patches"
    for name in ("normal", "tumor"):
        (folder / name).mkdir(parents=True)
        Image.fromarray(np.full((64, 64, 3), 200, np.uint8)).save(folder / name / "a.png")
    Image.new("L", (side, side), 255).save(folder / "tumor" / "b.png", optimize=True)  # ~0.5-1 MB
    code, said, peak = _run(f"""
        from pathlib import Path
        from fwrd.errors import FwrdError
        from fwrd.evaluation.patches import _batches, list_patches
        try:
            paths, _ = list_patches({str(folder)!r})
            for _ in _batches(paths, 64, 4):
                pass
            print("read")
        except FwrdError as exc:
            print("refused:", exc)
    """)
    assert code == 0 and said.startswith("refused:") and "b.png" in said, said
    assert f"{side}x{side} px" in said or "exceeds limit" in said
    assert 0 < peak < PEAK_MB


def test_a_mask_level_claim_is_refused_before_decoding(tmp_path):
    path = tmp_path / "slide_Mask.tif"
    tile = imagecodecs.zlib_encode(np.zeros((512, 512), np.uint8))
    side5 = 40_000
    with tifffile.TiffWriter(path, bigtiff=True) as tw:  # 40000^2 zeros: 1.6 GB decoded, ~2 MB stored
        tw.write(iter([tile] * (-(-side5 // 512)) ** 2), shape=(side5, side5), dtype=np.uint8, tile=(512, 512),
                 photometric="minisblack", compression="zlib", metadata=None)
    assert path.stat().st_size < 5_000_000
    code, said, peak = _run(f"""
        from fwrd.errors import FwrdError
        from fwrd.evaluation.masks import read_mask_tiff
        try:
            read_mask_tiff({str(path)!r}, level=0)
            print("read")
        except FwrdError as exc:
            print("refused:", exc)
    """)
    assert code == 0 and said.startswith("refused:") and "40000x40000 px" in said, said
    assert 0 < peak < PEAK_MB


def _asap_xml(path: Path, polygon: np.ndarray | list) -> Path:
    root = ET.Element("ASAP_Annotations")
    node = ET.SubElement(ET.SubElement(root, "Annotations"), "Annotation", Name="a", Type="Polygon", PartOfGroup="_0")
    coords = ET.SubElement(node, "Coordinates")
    for order, (x, y) in enumerate(polygon):
        ET.SubElement(coords, "Coordinate", Order=str(order), X=str(x), Y=str(y))
    ET.ElementTree(root).write(path)
    return path


def test_a_200k_vertex_polygon_rasterizes_in_bounded_memory(tmp_path):
    # a tall, narrow region (a core biopsy): few columns per row let row blocks grow, each times every edge
    angle = np.linspace(0, 2 * np.pi, 200_000, endpoint=False)
    xml = _asap_xml(tmp_path / "big.xml", np.stack([1_600 + 1_500 * np.cos(angle),
                                                   50_000 + 45_000 * np.sin(angle)], axis=1).round(2))
    code, said, peak = _run(f"""
        from fwrd.evaluation.masks import rasterize_xml
        mask = rasterize_xml({str(xml)!r}, (3_200, 100_000))
        print("tumor pixels", int(mask.tumor.sum()))
    """)
    expected = np.pi * (1_500 / 32) * (45_000 / 32)
    assert code == 0 and said.startswith("tumor pixels"), said
    assert abs(int(said.split()[-1]) / expected - 1) < 0.01
    assert 0 < peak < PEAK_MB


@pytest.mark.parametrize("value", ["nan", "inf", "-Infinity", "1e999"])
def test_annotation_coordinates_must_be_finite(tmp_path, value):
    from fwrd.errors import AnnotationError
    from fwrd.slide.annotations import load_asap_xml

    xml = _asap_xml(tmp_path / "a.xml", [(10, 10), (value, 20), (30, 40)])
    with pytest.raises(AnnotationError, match=rf"a.xml: coordinate X='{value}' is not a finite number"):
        load_asap_xml(xml)


def test_a_jpeg_2000_header_claim_is_refused_before_openslide_decodes(tmp_path):
    from fwrd.errors import SlideError
    from fwrd.slide.tile_reader import open_tile_reader

    rng = np.random.default_rng(0)
    tiles = [imagecodecs.jpeg2k_encode(rng.integers(0, 255, (s, s, 3), dtype=np.uint8), codecformat="j2k")
             for s in (1024, 256, 256, 256)]  # the first tile's codestream claims 1024 px
    path = tmp_path / "j2k.svs"
    with tifffile.TiffWriter(path) as tw:
        tw.write(iter(tiles), shape=(512, 512, 3), dtype=np.uint8, tile=(256, 256), photometric="rgb",
                 compression=33005, metadata=None,
                 description="Aperio Image Library v12.0.15 \r\n512x512 [0,0 512x512] (256x256) J2K|MPP = 0.243")
        tw.write(np.full((128, 128, 3), 200, np.uint8), tile=(128, 128), photometric="rgb", compression="jpeg",
                 subfiletype=1, metadata=None,
                 description="Aperio Image Library v12.0.15 \r\n512x512 -> 128x128 JPEG/RGB Q=80")
    with open_tile_reader(path, 0) as reader:
        assert reader.kind == "openslide"
        reader.read(256, 0, 256)  # a sound tile
        with pytest.raises(SlideError, match=r"the JPEG 2000 header of tile 0 \(column 0, row 0\) of the 512x512 "
                                             r"level claims 1024x1024 px in a 256x256 px tile"):
            reader.read(0, 0, 512)
