"""The GPU verification kit: everything fwrd can check and measure on a GPU machine without TensorRT.

    bash benchmarks/gpu/run.sh                 # on the GPU machine (see benchmarks/gpu/README.md)
    bash benchmarks/gpu/run.sh --dry-run       # the same steps on this CPU, tiny sizes, CUDA parts skipped
    python benchmarks/gpu/kit.py --dry-run     # the same, without run.sh's offline wheel install

Steps, in order of importance, one module each under gpukit/ (each is timed and recorded; one failing never
stops the others, and a step that would not fit in what is left of --budget-s is skipped and says so):

    environment      GPU, driver, CUDA, torch, cuda-bindings; whether TensorRT / onnxruntime-gpu exist
    cuda_memory      tests/test_cuda_memory_device.py: fwrd/runtime/cuda_memory.py on the real device
    precision        fp32 (TF32 off) vs TF32 vs fp16 vs CPU fp32 scores on the export gate's tiles
    levers           issue 22's levers on device-resident tiles: BatchNorm unfolded (the baseline) vs folded
                     vs compiled, with and without CUDA graphs, fp16 vs bf16; a profiler kernel-time split;
                     dense per-FLOP efficiency; the batch size that fills the card at 64 px
    torch_pipeline   fwrd-bench: decode only (16 workers), inference only (torch fp16/fp32, batches, compiled),
                     the full fwrd-run pipeline, CUDA graphs on/off, and the naive loop; the verdict;
                     and fwrd-bench --dense: dense scoring vs per tile on the same slide and on a
                     tissue-filled section
    tensorrt_slots   the TensorRT backend's slot pipeline (pinned/device buffers, two streams) driven
                     by a stand-in engine that runs the scorer with torch on the backend's streams
    training         training steps/s at 256 px with and without bf16 autocast, and two short real
                     `fwrd-train --device cuda` runs, fp32 and --amp

Writes OUT/kit.json, OUT/kit.md, OUT/kit.log, OUT/bench-*.json and, unless --dry-run,
benchmarks/results/gpu-<gpu>-<date>.json|md (copies also under OUT, since only OUT comes back from the
project's GPU machine).
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
for entry in (str(ROOT), str(HERE), str(ROOT / "benchmarks")):
    if entry not in sys.path:
        sys.path.insert(0, entry)

from gpukit.core import main  # noqa: E402  (after the paths above)

if __name__ == "__main__":
    sys.exit(main())
