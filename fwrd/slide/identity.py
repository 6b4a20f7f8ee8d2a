"""Which slide file is this? A cheap fingerprint that `--resume` keys its outputs and journals on.

A slide replaced under the same name (a rescan, a corrected file, another case copied over it) must
not keep the old slide's scores. Hashing a whole slide (1-4 GB) would cost seconds per slide on every
`--resume`, so the fingerprint is the file size plus a sha256 of three 1 MiB samples: the start (the
TIFF header and, for SVS/NDPI/most scanners, the first directories with the scanner's description,
date and barcode), the middle and the end (BigTIFF pyramids such as Camelyon16's keep their
directories there). Two different scans never share all of these; reading them costs three small
reads (~1 ms on a local disk).

The modification time is deliberately left out: copying a cohort to node-local scratch (Slurm) or
another disk without preserving times (`cp`, `rsync` without `-t`) would otherwise rescore every
slide, and a replacement that keeps the size, header, middle and tail of the old file is not a
realistic accident. What it cannot see: an edit confined to bytes outside the samples that keeps the
size (deliberate tampering, or a bit flip in tile data), which no cheap key can.

    slide_identity("tumor_001.tif")   # "v1:2159083520:5f0c...": size and sampled sha256
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

SAMPLE = 1 << 20  # bytes per sample
VERSION = "v1"  # changes if the sampling does, so old keys never match new ones by accident


def slide_identity(path: str | Path) -> str:
    """`v1:<size>:<sha256 of the first, middle and last MiB>` (the whole file when <= 3 MiB); for a DICOM
    series folder, `v1-series:<sha256 of its instances' names and identities>`."""
    if Path(path).is_dir():
        from fwrd.slide.dicom import dicom_files

        digest = hashlib.sha256()
        for instance in dicom_files(Path(path)):
            digest.update(f"{instance.name}\0{slide_identity(instance)}\n".encode())
        return f"{VERSION}-series:{digest.hexdigest()[:32]}"
    size = os.path.getsize(path)
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        if size <= 3 * SAMPLE:
            digest.update(handle.read())
        else:
            for offset in (0, (size - SAMPLE) // 2, size - SAMPLE):
                handle.seek(offset)
                digest.update(handle.read(SAMPLE))
    return f"{VERSION}:{size}:{digest.hexdigest()[:32]}"
