"""Write a small DICOM whole-slide image series with pydicom, as scanners export them: one VL Whole Slide
Microscopy Image instance per pyramid level (VOLUME), plus LABEL and OVERVIEW instances, TILED_FULL, JPEG
baseline frames, all of one series in one folder (what OpenSlide 4's DICOM driver opens).

    write_series(folder, level0_rgb, mpp=0.25, levels=2)   # level0.dcm, level1.dcm, label.dcm, overview.dcm
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import JPEGBaseline8Bit, generate_uid

VL_WSI = "1.2.840.10008.5.1.4.1.1.77.1.6"  # VL Whole Slide Microscopy Image Storage


def _frames(image: np.ndarray, tile: int) -> list[bytes]:
    h, w = image.shape[:2]
    frames = []
    for y in range(0, h, tile):
        for x in range(0, w, tile):
            block = np.full((tile, tile, 3), 255, np.uint8)  # TILED_FULL pads the last row and column
            part = image[y:y + tile, x:x + tile]
            block[:part.shape[0], :part.shape[1]] = part
            buffer = io.BytesIO()
            Image.fromarray(block).save(buffer, format="JPEG", quality=95)
            frames.append(buffer.getvalue())
    return frames


def write_instance(path: Path, image: np.ndarray, kind: str, series: str, study: str, mpp: float,
                   tile: int = 256) -> None:
    """One instance of `kind` (VOLUME, LABEL, OVERVIEW, THUMBNAIL) holding `image` at `mpp` um/px."""
    h, w = image.shape[:2]
    frames = _frames(image, tile)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = VL_WSI
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = JPEGBaseline8Bit
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = VL_WSI, meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
    ds.Modality = "SM"
    ds.ImageType = ["ORIGINAL", "PRIMARY", kind, "NONE"]
    ds.Rows = ds.Columns = tile
    ds.TotalPixelMatrixColumns, ds.TotalPixelMatrixRows = w, h
    ds.NumberOfFrames = len(frames)
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "YBR_FULL_422", 0
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.DimensionOrganizationType = "TILED_FULL"
    ds.TotalPixelMatrixFocalPlanes = 1
    ds.NumberOfOpticalPaths = 1
    path_item = Dataset()
    path_item.OpticalPathIdentifier = "1"
    ds.OpticalPathSequence = [path_item]
    measures = Dataset()
    measures.PixelSpacing = [mpp / 1000, mpp / 1000]  # millimetres
    measures.SliceThickness = 0.001
    shared = Dataset()
    shared.PixelMeasuresSequence = [measures]
    ds.SharedFunctionalGroupsSequence = [shared]
    ds.ImagedVolumeWidth, ds.ImagedVolumeHeight = w * mpp / 1000, h * mpp / 1000
    ds.ContainerIdentifier = "FWRD-TEST"
    ds.PixelData = encapsulate(frames)
    ds.save_as(path, enforce_file_format=True)


def write_series(folder: Path, level0: np.ndarray, mpp: float, levels: int = 2) -> Path:
    """`folder` holding one series: `levels` VOLUME instances (halving), a LABEL and an OVERVIEW."""
    folder.mkdir(parents=True, exist_ok=True)
    series, study = generate_uid(), generate_uid()
    image = level0
    for k in range(levels):
        write_instance(folder / f"level{k}.dcm", image, "VOLUME", series, study, mpp * 2**k)
        h, w = image.shape[0] // 2 * 2, image.shape[1] // 2 * 2
        image = image[:h, :w].reshape(h // 2, 2, w // 2, 2, 3).mean(axis=(1, 3)).round().astype(np.uint8)
    label = np.full((200, 400, 3), 250, np.uint8)
    label[60:140, 40:360] = 20  # a barcode-like band: never to be scored
    write_instance(folder / "label.dcm", label, "LABEL", series, study, mpp)
    write_instance(folder / "overview.dcm", level0[::8, ::8].copy(), "OVERVIEW", series, study, mpp * 8)
    return folder
