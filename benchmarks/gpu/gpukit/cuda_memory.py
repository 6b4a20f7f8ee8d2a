"""tests/test_cuda_memory_device.py with the real cuda-python: fwrd/runtime/cuda_memory.py on the device
(pinned and device round trips, async copies, a 1 PiB allocation becoming CudaError, double frees)."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from typing import Any

from gpukit.core import ROOT, Kit, Skip


def run(kit: Kit) -> dict[str, Any]:
    kit.cuda()
    if importlib.util.find_spec("cuda") is None:
        raise Skip("cuda-python (cuda-bindings) is not installed")
    test = ROOT / "tests" / "test_cuda_memory_device.py"
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rA", "-p", "no:cacheprovider", str(test)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])})
    lines = [line for line in done.stdout.splitlines() if re.match(r"^(PASSED|FAILED|SKIPPED|ERROR)", line)]
    summary = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else done.stderr[-300:]
    result = {"returncode": done.returncode, "summary": summary, "tests": lines,
              "output_tail": (done.stdout + done.stderr)[-3000:] if done.returncode else ""}
    if done.returncode != 0:
        raise RuntimeError(f"cuda_memory tests failed: {summary}")
    return result
