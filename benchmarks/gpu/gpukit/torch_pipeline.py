"""fwrd-bench on the synthetic slide, 256 px tiles at stride 64, torch backend: decode only, inference only
(fp16 at three batch sizes, fp32, CUDA graphs on/off, compiled), the whole fwrd-run pipeline and the naive
loop, with the verdict; and dense scoring vs per tile end to end on the same slide and on a tissue-filled
section (issue 22's targets: dense >= 5x and >= 10x, Spearman with per-tile unchanged).

Every run warms up before it is timed (backends autotune when they open; dense passes the slide once
uncounted: fwrd.benchmark.harness) and repeats `sizes.repeats` times (3 on the GPU plan).
"""

from __future__ import annotations

import json
from typing import Any

from gpukit.core import Kit
from gpukit.report import bench_summary

# The section: tissue blobs 2.5x larger, so tissue lies under 13,736 of the 16,384 grid points of an 8192 px
# slide (stride 64, 256 px; from about 3 the Otsu tissue rule loses tissue: fwrd.slide.synthetic_render), and
# 4096 px regions plan 11.2x fewer pixels than per tile (6.7x if forced to full size).
SECTION_TISSUE_SCALE = 2.5


def run(kit: Kit) -> dict[str, Any]:
    from fwrd.benchmark.harness import BenchSettings, run_benchmark
    from fwrd.benchmark.report import render_text

    s = kit.sizes
    wanted = kit.args.pipeline_runs
    common = dict(models=(kit.checkpoint(),), workers=(s.workers,), seconds=s.seconds, repeats=s.repeats,
                  stride=s.stride, device=kit.device(), warmup=2)
    half = "torch-fp32" if kit.dry else "torch-fp16"  # PyTorch's CPU half convolutions crawl
    middle = (s.batch_sizes[len(s.batch_sizes) // 2],)
    graphs = not kit.dry
    runs = {
        # fp16, eager: every batch size, decode, the whole pipeline and the naive loop
        "fp16": dict(backends=(half,), batch_sizes=s.batch_sizes, checkpoint=kit.checkpoint(),
                     stages=("decode", "inference", "end-to-end", "naive"), cuda_graphs=False),
        # CUDA graphs on the middle batch size
        "fp16-graphs": dict(backends=(half,), batch_sizes=middle, stages=("inference", "end-to-end"),
                            cuda_graphs=graphs),
        # fp32 (TF32 off): inference only, it is several times slower
        "fp32": dict(backends=("torch-fp32",), batch_sizes=middle, stages=("inference",), cuda_graphs=False),
        # torch.compile'd scorer under CUDA graphs, the two larger batch sizes: issue 22's per-tile target
        "compiled": dict(backends=(half,), batch_sizes=s.batch_sizes[-2:], stages=("inference", "end-to-end"),
                         cuda_graphs=graphs, compile=True),
        # dense scoring vs per tile, end to end on the same slide (its figures go to kit.json only)
        "dense": dict(backends=(half,), batch_sizes=middle, stages=("end-to-end",), cuda_graphs=graphs, dense=True),
        # ... and on a section that tissue fills
        "dense-section": dict(backends=(half,), batch_sizes=middle, stages=("end-to-end",), cuda_graphs=graphs,
                              dense=True),
    }
    if kit.dry and not wanted:
        # compiling the whole network takes minutes on a small CPU: the levers step (and
        # tests/test_compiled_scorer.py) exercise compilation there; and with fp32 standing in for fp16 and no
        # CUDA graphs, "fp16-graphs" and "fp32" would run "fp16"'s settings again
        for name in ("compiled", "fp16-graphs", "fp32"):
            runs.pop(name)
    summary: dict[str, Any] = {}
    for name, options in runs.items():
        if wanted and name not in wanted:
            continue
        if kit.left() < (25 if not kit.dry else 1):
            summary[name] = {"status": "skipped", "reason": "out of time"}
            continue
        slide = kit.slide(s.section, SECTION_TISSUE_SCALE) if name == "dense-section" else kit.slide()
        kit.log(f"fwrd-bench {name}")
        record = run_benchmark(BenchSettings(slide=slide, **common, **options),
                               log=lambda line: kit.log(f"  bench: {line}"))
        record["kit_run"] = name
        if not name.startswith("dense"):  # the device tool brings back at most 8 files
            (kit.out / f"bench-{name}.json").write_text(json.dumps(record, indent=2, default=str) + "\n")
        kit.log("\n" + render_text(record))
        summary[name] = bench_summary(record)
    return summary
