"""Peak memory of scoring one slide, in a fresh process, so nothing else the benchmark holds counts.

The runtime's buffers are fixed and its outputs grow with slide / stride, so peak RSS should barely
move when the slide's area grows 4x; `peak_rss_mb` runs `python -m fwrd.benchmark.memory` on a slide
and returns the child's VmHWM.

    peak_rss_mb(slide, model, "auto", RunSettings(batch_size=16, workers=2), threads=None)
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

from fwrd.errors import FwrdError
from fwrd.runtime.settings import RunSettings


def peak_rss_mb(slide: Path, model: Path, kind: str, settings: RunSettings, threads: int | None) -> float:
    """Peak RSS (MiB) of a fresh process that opens `model` on `kind` and scores `slide` once."""
    command = [sys.executable, "-m", "fwrd.benchmark.memory", str(slide), str(model), "--kind", kind,
               "--settings", json.dumps(settings.to_dict()), "--threads", str(threads or 0)]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        lines = (done.stderr or done.stdout).strip().splitlines()
        raise FwrdError(f"memory measurement failed: {lines[-1] if lines else f'exit {done.returncode}'}")
    return float(done.stdout.strip().splitlines()[-1])


def own_peak_rss_mb() -> float:
    """This process's peak RSS: VmHWM (ru_maxrss can carry the forking parent's peak across exec)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _child(argv: list[str] | None = None) -> None:
    from fwrd.benchmark.targets import open_one
    from fwrd.runtime.slide_job import score_slide

    parser = argparse.ArgumentParser(prog="python -m fwrd.benchmark.memory")
    parser.add_argument("slide", type=Path)
    parser.add_argument("model", type=Path)
    parser.add_argument("--kind", default="auto")
    parser.add_argument("--settings", required=True, help="RunSettings as JSON")
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args(argv)
    settings = RunSettings(**json.loads(args.settings))
    with open_one(args.model, args.kind, settings.batch_size, args.threads or None) as backend:
        with tempfile.TemporaryDirectory() as out:
            score_slide(args.slide, backend, Path(out), settings, measuring=True)  # a peak, then removed
    print(f"{own_peak_rss_mb():.1f}")


if __name__ == "__main__":
    try:
        _child()
    except FwrdError as exc:
        sys.exit(f"Error: {exc}")
