"""Which slide file is this? The fingerprint `--resume` keys its outputs and journals on.

A slide replaced or altered under the same name (a rescan, a corrected file, another case copied over
it, damaged bytes) must not keep the old slide's scores. Every byte can matter (any tile the grid reads,
the tissue mask's level, the thumbnail, the directories), so the fingerprint is the file size and a
sha256 of the whole file: about 1 s per GB on one core when the file is in the page cache
(benchmarks/results/slide-identity.md), far below what scoring it costs.

What `--resume` would pay on every finished slide is avoided the way git's index does it: summary.json
records the file's stat (size, modification and inode-change times in ns, inode, device) next to the
fingerprint, and a file whose stat is unchanged keeps its recorded fingerprint without being read. Any
write to a file changes its inode-change time (ctime), which no user call can set back, and a copy or
rename gives a new inode, so the shortcut only ever trusts a file nobody has written since it was
hashed; anything else is hashed again. The modification time alone is not trusted (`touch -r`, `cp -p`
set it), and it is not needed either: copying a cohort to node-local scratch costs one hash per slide,
never a rescore.

    slide_identity("tumor_001.tif")                # "v2:2159083520:5f0c...": size and sha256
    identify("tumor_001.tif", recorded=summary)    # (fingerprint, stat): the summary's if the stat matches
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

from fwrd.digest import file_sha256
from fwrd.slide.dicom import dicom_files

VERSION = "v2"  # v1 sampled three MiB; a new version never matches an old key by accident


def file_stat(path: str | Path) -> list[int]:
    """[size, mtime_ns, ctime_ns, inode, device]: what changes whenever the file's bytes may have."""
    st = os.stat(path)
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev]


def identify(path: str | Path, recorded: dict[str, Any] | None = None) -> tuple[str, list[int]]:
    """(fingerprint, stat) of the file: `v2:<size>:<sha256 of every byte>`, or the fingerprint in `recorded`
    (a summary.json's `slide_identity` and `slide_stat`) when the file's stat equals the one recorded with
    it. The stat is taken before the bytes are read, so a file written meanwhile is hashed again next time.

    A DICOM series folder (one slide, fwrd.slide.dicom) is all its instance files: `v2-series:<sha256 of
    their names and fingerprints>`, its stat theirs one after another."""
    path = Path(path)
    instances = dicom_files(path) if path.is_dir() else [path]
    stat = [value for instance in instances for value in file_stat(instance)]
    known = (recorded or {}).get("slide_identity")
    if isinstance(known, str) and known.startswith(f"{VERSION}") and (recorded or {}).get("slide_stat") == stat:
        return known, stat
    if not path.is_dir():
        return f"{VERSION}:{stat[0]}:{file_sha256(path)[:32]}", stat
    digest = hashlib.sha256()
    for instance in instances:
        digest.update(f"{instance.name}\0{file_sha256(instance)}\n".encode())
    return f"{VERSION}-series:{digest.hexdigest()[:32]}", stat


def slide_identity(path: str | Path) -> str:
    """`v2:<size>:<sha256 of every byte>`, or `v2-series:...` for a DICOM series folder (see `identify`)."""
    return identify(path)[0]
