"""What each of issue 22's levers buys, in one call, on tiles already on the device (no decode, no copies):

    variants     the scorer as shipped before issue 22 (BatchNorm unfolded, eager, CUDA graphs: the
                 baseline, rerun here; only its cosine maps are today's, fp16 read with fp32 accumulation,
                 which has no switch: the H100 record's 3,338 tiles/s is the figure before that) against
                 BatchNorm folded, torch.compile'd (inductor, frozen weights),
                 each with and without CUDA graphs, and bf16 against fp16: tiles/s, x baseline, TFLOP/s
                 (FLOPs from torch.utils.flop_counter.FlopCounterMode), fraction of the card's dense fp16
                 peak, compile seconds, and the scores of the export gate's tiles against fp32 (TF32 off)
                 with the fp16 export gate's verdict
    kernel_split torch.profiler: kernel time in convolution / BatchNorm / pointwise / reductions / copies,
                 for the baseline, folded and compiled scorers
    dense        one region pass (FLOPs, TFLOP/s) next to the tile batches' TFLOP/s: dense per-FLOP
                 efficiency; and the device window scores' time for that region
    small_tiles  a 64 px network at batch 256 / 512 / 1024: which batch fills the card

Each timing: warm-up passes first (cuDNN autotune, compilation, graph capture), then `repeats` (>= 3 on
the GPU plan) timed runs of `levers_iters` passes; the median is reported with the spread.
On a dry run (CPU, tiny sizes) fp32 stands in for fp16, bf16 and CUDA graphs are skipped, and torch.compile
runs with its "eager" backend (the tracing and the fallback, without minutes of C++ compilation).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

from gpukit.core import Kit
from gpukit.report import compare, within_gate

PEAK_TFLOPS = {"H100": 989.4, "H200": 989.4}  # dense fp16/bf16 tensor-core peak (SXM), by name
CATEGORIES = (  # kernel / op name substrings, checked in this order (a cuDNN BatchNorm is not a convolution)
    ("batchnorm", ("batch_norm", "batchnorm", "bn_fw")),
    ("convolution", ("conv", "xmma", "implicit_gemm", "cutlass", "cudnn", "gemm", "nchwtonhwc", "nhwctonchw",
                     "winograd", "mkldnn")),
    ("reduction", ("reduce", "triton_red", "triton_per", "norm", "sum", "mean")),
    ("copy", ("memcpy", "memset", "copy", "cat")),
    ("pointwise", ("elementwise", "triton_poi", "relu", "add", "mul", "sub", "div", "clamp", "fill", "pow", "sqrt")),
)


def run(kit: Kit) -> dict[str, Any]:
    import numpy as np
    import torch

    from fwrd.evaluation.roc import roc_auc
    from fwrd.export.calibration import labelled_synthetic_tiles, noise_tiles
    from fwrd.export.verify import GATES
    from fwrd.model.checkpoint import load_checkpoint
    from fwrd.model.fused_scorer import FusedScorer

    s = kit.sizes
    cuda = not kit.dry and torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    if cuda:
        torch.backends.cudnn.benchmark = True
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    model, config = load_checkpoint(kit.checkpoint())
    t = config.tile_size
    tissue, labels = labelled_synthetic_tiles(config, per_class=s.per_class, seed=11)
    check = np.concatenate([tissue, noise_tiles(config, max(2, s.per_class // 2), seed=11)])
    if not cuda:  # a CPU pass is seconds: a few tiles of each kind still compare the variants' scores
        check = check[np.r_[0:s.levers_batch, len(check) - s.levers_batch:len(check)]]
        labels = labels[:s.levers_batch]
    batch = torch.from_numpy(check[np.arange(s.levers_batch) % len(check)]).to(device)  # device-resident
    repeats = max(3, s.repeats) if cuda else 1
    gpu_name = torch.cuda.get_device_name(0) if cuda else ""
    peak = next((v for k, v in PEAK_TFLOPS.items() if k in gpu_name), None)

    def scorer(fold: bool, half: torch.dtype | None) -> torch.nn.Module:
        module = FusedScorer(model, config, half=half is not None, fold=fold,
                             half_dtype=half or torch.float16).eval().to(device)
        return module.to(memory_format=torch.channels_last) if cuda else module

    with torch.inference_mode():
        reference = _scores(scorer(False, None), check, s.levers_batch, device)  # fp32, unfolded, TF32 off
    flops_per_tile = _flops(scorer(True, None), batch[:1])
    fp16 = torch.float16 if cuda else None  # PyTorch's CPU half convolutions crawl: fp32 stands in there
    plan: list[tuple[str, bool, torch.dtype | None, bool, bool]] = [  # name, fold, dtype, compile, graphs
        ("unfolded", False, fp16, False, False), ("folded", True, fp16, False, False),
        ("compiled", True, fp16, True, False)]
    if cuda:
        plan += [("unfolded+graphs", False, fp16, False, True), ("folded+graphs", True, fp16, False, True),
                 ("compiled+graphs", True, fp16, True, True), ("bf16 folded+graphs", True, torch.bfloat16, False, True)]
        # (no bf16 compiled: a second compilation of a minute or more, for a dtype choice folded+graphs shows)
    baseline = "unfolded+graphs" if cuda else "unfolded"
    variants: dict[str, dict[str, Any]] = {}
    modules: dict[str, Callable] = {}
    compiled_cache: dict[Any, Any] = {}
    for name, fold, dtype, compiled, graphs in plan:
        if kit.left() < 20:
            variants[name] = {"error": "out of time"}
            continue
        try:
            module = scorer(fold, dtype)
            row: dict[str, Any] = {"fold": fold, "dtype": str(dtype or torch.float32).replace("torch.", ""),
                                   "compiled": compiled, "cuda_graphs": graphs}
            fn: Callable = module
            if compiled:
                key = (fold, dtype)
                if key not in compiled_cache:
                    from fwrd.model.compiled import compile_scorer

                    compiled_cache[key] = compile_scorer(module, batch, backend="inductor" if cuda else "eager")
                made = compiled_cache[key]
                row.update(compile_seconds=round(made.seconds, 1), compile_note=made.note)
                fn = made.module
            modules[name] = fn
            with torch.inference_mode():
                row["scores"] = compare(reference, _scores(fn, check, s.levers_batch, device), labels, roc_auc)
                row["within_fp16_gate"] = within_gate(row["scores"], GATES["fp16"])
                rates = _time(fn, batch, s.levers_iters, repeats, graphs, device)
            row["tiles_per_s"] = round(statistics.median(rates), 3)
            row["tiles_per_s_runs"] = [round(r, 3) for r in rates]
            row["tflop_per_s"] = _sig(row["tiles_per_s"] * flops_per_tile / 1e12)
            row["of_peak"] = round(row["tflop_per_s"] / peak, 3) if peak else None
            variants[name] = row
            kit.log(f"levers: {name}: {row['tiles_per_s']} tiles/s, {row['tflop_per_s']} TFLOP/s")
        except Exception as exc:  # one variant failing (bf16 on an old card, ...) leaves the others
            variants[name] = {"error": f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}"}
            kit.log(f"levers: {name} failed: {variants[name]['error']}")
        if cuda:
            torch.cuda.empty_cache()
    base = (variants.get(baseline) or {}).get("tiles_per_s")
    for row in variants.values():
        if base and row.get("tiles_per_s"):
            row["x_baseline"] = round(row["tiles_per_s"] / base, 3)
    result: dict[str, Any] = {
        "device": gpu_name or "cpu", "tile": t, "batch": s.levers_batch, "repeats": repeats,
        "gflop_per_tile": round(flops_per_tile / 1e9, 3), "peak_tflop_per_s": peak, "baseline": baseline,
        "reference": "fp32, BatchNorm unfolded, eager, TF32 off", "variants": variants}
    result["kernel_split"] = {name: _kernel_split(modules[name], batch, device)
                              for name in ("unfolded", "folded", "compiled") if name in modules}
    out_of_time = {"status": "skipped", "reason": "out of time"}
    result["dense"] = (_dense(scorer(True, fp16), t, s.levers_region, s.levers_iters, repeats, device,
                              variants.get("folded", {}).get("tflop_per_s")) if kit.left() > 20 else out_of_time)
    result["small_tiles"] = (_small_tiles(config, s.small_tile, s.small_batches, fp16, cuda, device, repeats,
                                          s.levers_iters) if kit.left() > 20 else out_of_time)
    return result


def _sig(value: float) -> float:
    """Three significant digits (TFLOP/s on a CPU are thousandths, on a GPU hundreds)."""
    return float(f"{value:.3g}")


def _scores(fn: Callable, tiles: Any, batch: int, device: Any) -> Any:
    """Scores of `tiles` (numpy uint8) in chunks of `batch`, each padded to the full batch (one shape)."""
    import numpy as np
    import torch

    out = []
    for start in range(0, len(tiles), batch):
        chunk = tiles[start:start + batch]
        padded = np.zeros((batch, *tiles.shape[1:]), np.uint8)
        padded[:len(chunk)] = chunk
        out.append(fn(torch.from_numpy(padded).to(device))[0][:len(chunk)].float().cpu().numpy())
    return np.concatenate(out)


def _flops(module: Any, tiles: Any) -> float:
    """FLOPs of one pass (FlopCounterMode: convolutions and matrix products, 2 per multiply-add)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        module(tiles)
    return float(counter.get_total_flops()) / len(tiles)


def _time(fn: Callable, batch: Any, iters: int, repeats: int, graphs: bool, device: Any) -> list[float]:
    """Tiles per second of `repeats` runs of `iters` passes, after warm-up (and capture, with graphs)."""
    import torch

    cuda = device.type == "cuda"
    call = fn
    if cuda:
        stream = torch.cuda.Stream(device)
        stream.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(stream):
            for _ in range(3):  # cuDNN autotune, allocator
                fn(batch)
            if graphs:
                stream.synchronize()
                graph = torch.cuda.CUDAGraph()
                with torch.cuda.graph(graph, stream=stream):
                    fn(batch)
                call = lambda _: graph.replay()  # noqa: E731
        torch.cuda.current_stream(device).wait_stream(stream)
        torch.cuda.synchronize(device)
    else:
        fn(batch)
    rates = []
    for _ in range(repeats):
        began = time.perf_counter()
        for _ in range(iters):
            call(batch)
        if cuda:
            torch.cuda.synchronize(device)
        rates.append(iters * len(batch) / (time.perf_counter() - began))
    return rates


def _kernel_split(fn: Callable, batch: Any, device: Any) -> dict[str, Any]:
    """Self time of the kernels (CUDA) or ops (CPU) of two passes, summed by CATEGORIES."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    cuda = device.type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with torch.inference_mode():
        fn(batch)
        with profile(activities=activities) as prof:
            for _ in range(2):
                fn(batch)
            if cuda:
                torch.cuda.synchronize(device)
    totals: dict[str, float] = {}
    for event in prof.key_averages():
        on_device = getattr(event, "device_type", None) == torch.autograd.DeviceType.CUDA
        if cuda != on_device:
            continue
        us = (getattr(event, "self_device_time_total", 0.0) if cuda else event.self_cpu_time_total) or 0.0
        name = event.key.lower()
        kind = next((k for k, words in CATEGORIES if any(w in name for w in words)), "other")
        totals[kind] = totals.get(kind, 0.0) + us
    whole = sum(totals.values()) or 1.0
    return {"what": "CUDA kernel self time" if cuda else "CPU op self time", "ms_per_pass": round(whole / 2e3, 3),
            "fraction": {k: round(v / whole, 4) for k, v in sorted(totals.items(), key=lambda kv: -kv[1])}}


def _dense(module: Any, tile: int, side: int, iters: int, repeats: int, device: Any,
           tile_tflops: float | None) -> dict[str, Any]:
    """One side x side region pass: FLOPs and TFLOP/s, against the same scorer's tile batches; and the
    device window scores (every window at stride tile/4) for it."""
    import numpy as np
    import torch

    from fwrd.model.region_scores import device_window_scores
    from fwrd.runtime.window_scores import map_shapes, window_plan

    region = torch.from_numpy(np.random.default_rng(5).integers(0, 256, (1, side, side, 3), dtype=np.uint8)).to(device)
    flops = _flops(module, region)
    with torch.inference_mode():
        rate = statistics.median(_time(module, region, max(1, iters // 4), repeats, False, device))
        region_tflops = rate * flops / 1e12  # rate: regions per second
        maps = [m[0] for m in module(region)[2:]]
        steps = np.arange(0, side - tile + 1, tile // 4)
        offsets = np.stack(np.meshgrid(steps, steps), -1).reshape(-1, 2)
        plan = window_plan(map_shapes(side, side), tile, offsets)
        weights = [(torch.from_numpy(wy).to(device), torch.from_numpy(wx).to(device)) for wy, wx in plan.weights]
        rows, cols = torch.from_numpy(plan.rows).to(device), torch.from_numpy(plan.cols).to(device)
        began = time.perf_counter()
        for _ in range(5):
            device_window_scores(maps, weights, rows, cols)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        window_ms = (time.perf_counter() - began) / 5 * 1e3
    return {"region_side": side, "gflop_per_region": round(flops / 1e9, 2), "regions_per_s": _sig(rate),
            "region_tflop_per_s": _sig(region_tflops), "tile_tflop_per_s": tile_tflops,
            "per_flop_efficiency_vs_tiles": round(region_tflops / tile_tflops, 3) if tile_tflops else None,
            "windows": int(len(offsets)), "device_window_scores_ms": round(window_ms, 3)}


def _small_tiles(config: Any, tile: int, batches: tuple[int, ...], half: Any, cuda: bool, device: Any,
                 repeats: int, iters: int) -> dict[str, Any]:
    """A random `tile` px network (weights do not change its speed), folded, CUDA graphs on a GPU, at each
    batch size: tiles/s and peak memory; the best batch."""
    import dataclasses

    import torch

    from fwrd.model.fused_scorer import FusedScorer
    from fwrd.model.network import ReverseDistillation

    small = dataclasses.replace(config, tile_size=tile)
    module = FusedScorer(ReverseDistillation(small.architecture).eval(), small, half=half is not None,
                         half_dtype=half or torch.float16).eval().to(device)
    if cuda:
        module = module.to(memory_format=torch.channels_last)
    rows: dict[str, Any] = {}
    for b in batches:
        try:
            if cuda:
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats(device)
            tiles = torch.randint(0, 256, (b, tile, tile, 3), dtype=torch.uint8, device=device)
            with torch.inference_mode():
                rates = _time(module, tiles, max(1, iters // 2), repeats, cuda, device)
            peak = round(torch.cuda.max_memory_allocated(device) / 2**30, 2) if cuda else None
            rows[str(b)] = {"tiles_per_s": round(statistics.median(rates), 3), "peak_memory_gib": peak}
        except Exception as exc:  # out of memory at the largest batch is an answer too
            rows[str(b)] = {"error": f"{type(exc).__name__}: {' '.join(str(exc).split())[:200]}"}
    done = {b: r["tiles_per_s"] for b, r in rows.items() if "tiles_per_s" in r}
    return {"tile": tile, "batches": rows, "best_batch": int(max(done, key=done.get)) if done else None}
