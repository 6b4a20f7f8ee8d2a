"""Tumor masks at level 5: TIFF pyramids (255 or 1, with or without a stored level 5) and ASAP XML."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile

from fwrd.errors import DataError, InputNotFound
from fwrd.evaluation.froc import evaluation_mask, itc_labels
from fwrd.evaluation.masks import find_masks, load_mask, rasterize_xml, read_mask_tiff
from fwrd.slide.annotations import Annotations, rasterize
from fwrd.slide.synthetic import write_asap_xml, write_mask


def ellipse(cx: float, cy: float, a: float, b: float, n: int = 48) -> np.ndarray:
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return np.c_[cx + a * np.cos(t), cy + b * np.sin(t)]


def write_pyramid(path: Path, level5: np.ndarray, value: int = 255, levels: int = 6, rgb: bool = False) -> Path:
    """A mask TIFF whose level k is level 5 upsampled by 2^(5-k) (levels 0..levels-1)."""
    with tifffile.TiffWriter(path) as tw:
        for k in range(levels):
            plane = np.kron(level5.astype(np.uint8), np.ones((2 ** (5 - k),) * 2, np.uint8)) * np.uint8(value)
            if rgb:
                plane = np.repeat(plane[..., None], 3, axis=2)
            tw.write(plane, tile=(64, 64), compression="zlib", **({"subfiletype": 1} if k else {}))
    return path


@pytest.fixture
def level5() -> np.ndarray:
    mask = np.zeros((24, 40), dtype=bool)
    mask[4:12, 5:20] = True
    mask[15, 30] = True
    return mask


@pytest.mark.parametrize("value", [255, 1])
def test_tumor_value_255_or_1_is_detected(tmp_path, level5, value):
    mask = read_mask_tiff(write_pyramid(tmp_path / "a_Mask.tif", level5, value))
    assert np.array_equal(mask.tumor, level5)
    assert mask.level0_size == (40 * 32, 24 * 32)
    assert mask.encoding == str(value)


def test_rgb_mask_uses_the_first_channel(tmp_path, level5):
    mask = read_mask_tiff(write_pyramid(tmp_path / "a_Mask.tif", level5, rgb=True))
    assert np.array_equal(mask.tumor, level5)


def test_mask_without_level_5_is_read_from_a_finer_level(tmp_path, level5):
    # only levels 0..2 stored: level 2 is sampled every 8 pixels
    mask = read_mask_tiff(write_pyramid(tmp_path / "a_Mask.tif", level5, levels=3))
    assert np.array_equal(mask.tumor, level5)
    single = tmp_path / "single_Mask.tif"
    tifffile.imwrite(single, np.kron(level5.astype(np.uint8), np.ones((32, 32), np.uint8)) * 255)
    assert np.array_equal(read_mask_tiff(single).tumor, level5)


def test_odd_values_empty_and_unreadable_masks(tmp_path, level5):
    with pytest.raises(DataError, match="up to 7"):
        read_mask_tiff(write_pyramid(tmp_path / "a_Mask.tif", level5, value=7))
    empty = read_mask_tiff(write_pyramid(tmp_path / "b_Mask.tif", np.zeros_like(level5)))
    assert empty.encoding == "empty" and not empty.tumor.any()
    junk = tmp_path / "c_Mask.tif"
    junk.write_bytes(b"not a tiff at all")
    with pytest.raises(DataError, match="cannot read the mask"):
        read_mask_tiff(junk)
    with pytest.raises(InputNotFound):
        read_mask_tiff(tmp_path / "missing_Mask.tif")


def test_mask_of_the_wrong_size_is_refused(tmp_path, level5):
    write_pyramid(tmp_path / "a_Mask.tif", level5)
    source = find_masks([tmp_path])["a"]
    assert load_mask(source, (40 * 32, 24 * 32)).tumor.shape == (24, 40)
    with pytest.raises(DataError, match="wrong mask"):
        load_mask(source, (4096, 4096))


def test_find_masks_is_case_insensitive_and_prefers_tiff(tmp_path, level5):
    write_pyramid(tmp_path / "Tumor_001_mask.TIF", level5)
    write_asap_xml(tmp_path / "tumor_001.xml", Annotations(tumor=[ellipse(100, 100, 50, 50)]))
    write_asap_xml(tmp_path / "tumor_002.xml", Annotations(tumor=[ellipse(100, 100, 50, 50)]))
    (tmp_path / "notes.txt").write_text("x")
    found = find_masks([tmp_path])
    assert set(found) == {"tumor_001", "tumor_002"}
    assert found["tumor_001"].kind == "tiff" and found["tumor_001"].slide == "Tumor_001"
    assert found["tumor_002"].kind == "xml"
    with pytest.raises(DataError, match="slide's size"):
        load_mask(found["tumor_002"])
    with pytest.raises(InputNotFound):
        find_masks([tmp_path / "nowhere"])


def test_mask_tiff_and_xml_give_the_same_evaluation_mask(tmp_path):
    # a lesion with an exclusion hole, two nearby lesions and an ITC; the TIFF is written the way the
    # synthetic cohort writes its masks, with the pyramid carried down to level 5
    ann = Annotations(
        tumor=[ellipse(1200, 1000, 900, 600), ellipse(3000, 3000, 500, 300), ellipse(3000, 3750, 400, 300),
               ellipse(600, 3500, 60, 40)],
        exclusions=[ellipse(1200, 1000, 400, 250)],
    )
    size = (4096, 4096)
    write_asap_xml(tmp_path / "t.xml", ann)
    write_mask(tmp_path / "t_Mask.tif", ann, [(size[0] >> k, size[1] >> k) for k in range(6)], 0.243, 256, False)
    from_tiff = read_mask_tiff(tmp_path / "t_Mask.tif")
    from_xml = rasterize_xml(tmp_path / "t.xml", size)
    assert from_tiff.level0_size == from_xml.level0_size == size
    assert np.array_equal(from_tiff.tumor, from_xml.tumor)
    labels = evaluation_mask(from_xml.tumor)
    assert np.array_equal(evaluation_mask(from_tiff.tumor), labels)
    assert from_xml.tumor[1000 // 32, 1200 // 32] == 0  # the exclusion hole is cut from the mask ...
    assert labels[1000 // 32, 1200 // 32] > 0  # ... and filled again in the evaluation mask
    # the two lower lesions are 150 px (36 um) apart and merge; the small one is an ITC
    assert labels[3000 // 32, 3000 // 32] == labels[3750 // 32, 3000 // 32]
    assert labels.max() == 3 and itc_labels(labels).tolist() == [labels[3500 // 32, 600 // 32]]


def test_synthetic_cohort_mask_and_xml_agree(synthetic_cohort):
    # issue 11.14: the cohort's masks stopped at level 3 (2048 px slides), and the sampled level 5 moved
    # lesion borders by a pixel; they now store level 5, so mask and XML give the same pixels
    from fwrd.evaluation.masks import slide_size_lookup

    sources = find_masks([synthetic_cohort.masks_dir])
    xmls = find_masks([synthetic_cohort.annotations_dir])
    size_of = slide_size_lookup(synthetic_cohort.slides_dir)
    for slide in synthetic_cohort.tumor_slides:
        size = size_of(slide.name)
        with tifffile.TiffFile(slide.mask) as tif:
            assert len(tif.pages) >= 6
        from_tiff = load_mask(sources[slide.name], size)
        from_xml = load_mask(xmls[slide.name], size)
        assert from_xml.encoding == "xml" and from_tiff.encoding == "255"
        assert from_tiff.tumor.shape == from_xml.tumor.shape == (size[1] // 32, size[0] // 32)
        assert from_xml.tumor.sum() > 0 and np.array_equal(from_tiff.tumor, from_xml.tumor)
    assert size_of("no_such_slide") is None


def asap_pyramid(path: Path, level0: np.ndarray, levels: int) -> Path:
    """A mask TIFF built as ASAP's AnnotationToMask does: each level keeps the top-left pixel of 2 x 2."""
    with tifffile.TiffWriter(path) as tw:
        for k in range(levels):
            plane = level0[:: 2**k, :: 2**k].astype(np.uint8) * np.uint8(255)
            tw.write(plane, tile=(64, 64), compression="zlib", **({"subfiletype": 1} if k else {}))
    return path


def test_mask_without_level_5_is_subsampled_as_asap_builds_pyramids(tmp_path):
    # issue 11.14: the fallback sampled level-4 pixel 2i+1 (a pixel off ASAP's level 5)
    ann = Annotations(tumor=[ellipse(1210, 1003, 611, 377), ellipse(3017, 2950, 405, 533)],
                     exclusions=[ellipse(1210, 1003, 211, 150)])
    level0 = rasterize(ann, (4000, 4000), 1.0)
    full = read_mask_tiff(asap_pyramid(tmp_path / "full_Mask.tif", level0, 7))
    assert np.array_equal(full.tumor, level0[::32, ::32])  # what ASAP stores as level 5
    for levels in (1, 3, 5):  # level 0 only, down to level 2, down to level 4
        short = read_mask_tiff(asap_pyramid(tmp_path / f"l{levels}_Mask.tif", level0, levels))
        assert np.array_equal(short.tumor, full.tumor)
    assert not np.array_equal(level0[16::32, 16::32], full.tumor)  # sampling pixel centres would differ


def test_mask_without_level_5_uses_the_xml_beside_it(tmp_path):
    ann = Annotations(tumor=[ellipse(1210, 1003, 611, 377)], exclusions=[ellipse(1210, 1003, 211, 150)])
    size = (4000, 3000)
    write_mask(tmp_path / "t_Mask.tif", ann, [(size[0] >> k, size[1] >> k) for k in range(3)], 0.243, 256, False)
    write_asap_xml(tmp_path / "t.xml", ann)
    source = find_masks([tmp_path])["t"]
    assert source.kind == "tiff" and source.xml == tmp_path / "t.xml"
    mask = load_mask(source)
    assert mask.encoding == "xml" and mask.level0_size == size
    assert np.array_equal(mask.tumor, rasterize_xml(tmp_path / "t.xml", size).tumor)
