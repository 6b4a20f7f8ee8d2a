"""The TensorRT backend's slot pipeline (pinned/device buffers via cuda-python, two non-default streams)
driven by `standin_trt.py`, an engine whose `execute_async_v3(stream)` runs the fp16 scorer (the same
folded graph the real engine is built from) with torch on that stream over the bound device pointers:
results vs torch on the CPU, one slot vs two, overlap seen through CUDA events."""

from __future__ import annotations

import time
from typing import Any

from gpukit.core import Kit


def run(kit: Kit) -> dict[str, Any]:
    torch = kit.cuda()
    import numpy as np

    import standin_trt
    from fwrd.export.calibration import labelled_synthetic_tiles
    from fwrd.model.fused_scorer import FusedScorer
    from fwrd.model.checkpoint import load_checkpoint
    from fwrd.runtime.backends import tensorrt as trt_backend
    from fwrd.runtime.cuda_memory import device_properties

    s = kit.sizes
    model, config = load_checkpoint(kit.checkpoint())
    torch.backends.cudnn.allow_tf32 = False
    scorer = FusedScorer(model, config, half=True).eval().cuda()
    tissue, _ = labelled_synthetic_tiles(config, per_class=s.slot_batch, seed=3)
    rng = np.random.default_rng(3)
    batches = [tissue[rng.choice(len(tissue), size=s.slot_batch - (k % 3 == 2) * 5)]
               for k in range(s.slot_batches)]  # some partial batches
    gpu = device_properties()
    manifest = {"precision": "fp16", "profile": {"min": [1, config.tile_size, config.tile_size, 3],
                                                 "max": [s.slot_batch, config.tile_size, config.tile_size, 3]},
                "onnx_metadata": {}, "config": config.to_dict()}
    out: dict[str, Any] = {"batches": len(batches), "tiles": int(sum(len(b) for b in batches)),
                           "batch_size": s.slot_batch, "engine": "stand-in (FusedScorer fp16 in torch)"}
    with torch.inference_mode():  # the reference: the same scorer, plain torch, one batch at a time
        want = [scorer(torch.from_numpy(b).cuda())[0].float().cpu().numpy() for b in batches]
    torch.cuda.synchronize()
    saved_slots = trt_backend.SLOTS
    try:
        for slots in (1, 2):
            trt_backend.SLOTS = slots
            engine = standin_trt.StandInEngine(scorer, config.tile_size, s.slot_batch)
            trt = standin_trt.make_module(engine)
            backend = trt_backend.TensorRTBackend(trt, b"stand-in plan", manifest, config, s.slot_batch, gpu)
            try:
                list(backend.run_batches((k, b) for k, b in enumerate(batches[:2])))  # warm-up
                engine.launches.clear()
                began = time.perf_counter()
                got = list(backend.run_batches((k, b) for k, b in enumerate(batches)))
                seconds = time.perf_counter() - began
            finally:
                backend.close()
            torch.cuda.synchronize()
            assert [tag for tag, _, _ in got] == list(range(len(batches))), "batches out of order"
            worst = max(float(np.max(np.abs(g[1] - w) / np.maximum(np.abs(w), 1e-6)))
                        for g, w in zip(got, want))
            launches = list(engine.launches)
            row: dict[str, Any] = {"tiles_per_s": round(out["tiles"] / seconds, 1), "seconds": round(seconds, 3),
                                   "max_rel_vs_plain_torch": worst, "streams_used": len({l[0] for l in launches}),
                                   "contexts": len(engine.contexts)}
            row.update(_overlap(launches))
            out[f"slots_{slots}"] = row
    finally:
        trt_backend.SLOTS = saved_slots
    cpu_n = s.cpu_tiles
    from fwrd.runtime.backends import open_backend

    with open_backend(kit.checkpoint(), "torch", batch_size=8, device="cpu", precision="fp32") as cpu:
        cpu_score, _ = cpu.infer(batches[0][:cpu_n])
    from fwrd.export.verify import GATES

    delta = np.abs(want[0][:cpu_n].astype(np.float64) - cpu_score)
    out["vs_cpu_fp32"] = {"tiles": cpu_n, "max_abs": float(delta.max()),
                          "within_fp16_gate": bool(delta.max() <= GATES["fp16"].max_abs_delta)}
    out["results_equal_plain_torch"] = bool(max(out["slots_1"]["max_rel_vs_plain_torch"],
                                                out["slots_2"]["max_rel_vs_plain_torch"]) <= 1e-3)
    return out


def _overlap(launches: list[tuple[int, Any, Any]]) -> dict[str, Any]:
    """From the stand-in's per-batch CUDA events: how long the GPU computed, and whether one batch's work
    began before the previous batch's finished (its copy-in done while the other computed)."""
    if len(launches) < 2:
        return {}
    busy = sum(start.elapsed_time(end) for _, start, end in launches)
    span = launches[0][1].elapsed_time(launches[-1][2])
    early = [launches[k][2].elapsed_time(launches[k + 1][1]) for k in range(len(launches) - 1)]
    return {"gpu_compute_ms": round(busy, 2), "gpu_span_ms": round(span, 2),
            "compute_fraction_of_span": round(busy / span, 4) if span > 0 else None,
            "next_batch_started_before_previous_ended": int(sum(e < 0 for e in early)),
            "gap_between_batches_ms_median": round(sorted(early)[len(early) // 2], 3)}

