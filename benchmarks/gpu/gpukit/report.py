"""kit.md from kit.json, and the small summaries the steps share (score comparisons, fwrd-bench records)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any


def compare(ref: Any, got: Any, labels: Any, roc_auc: Callable | None = None) -> dict[str, Any]:
    """|got - ref| (absolute, relative), Spearman, finiteness, and the AUROC change when labels allow."""
    import numpy as np
    from scipy.stats import spearmanr

    ref, got = np.asarray(ref, np.float64), np.asarray(got, np.float64)
    delta = np.abs(got - ref)
    rel = delta / np.maximum(np.abs(ref), 1e-6)
    row = {"tiles": int(len(got)), "max_abs": float(delta.max()), "max_rel": float(rel.max()),
           "mean_abs": float(delta.mean()), "spearman": float(spearmanr(ref, got).statistic) if len(got) > 2 else None,
           "finite": bool(np.isfinite(got).all())}
    n = min(len(got), len(labels)) if labels is not None else 0
    if roc_auc is not None and n and len(set(labels[:n].tolist())) == 2:  # labels: is_tumor
        row["auroc_change"] = float(abs(roc_auc(labels[:n], got[:n]) - roc_auc(labels[:n], ref[:n])))
    return row


def within_gate(row: dict[str, Any], gate: Any) -> bool:
    """Whether a `compare` row passes an export gate (fwrd.export.gate.Gate)."""
    return bool(row["finite"]
                and (gate.max_abs_delta is None or row["max_abs"] <= gate.max_abs_delta)
                and (gate.max_rel_delta is None or row["max_rel"] <= gate.max_rel_delta)
                and (row["spearman"] is None or row["spearman"] >= gate.min_spearman))


def bench_summary(record: dict[str, Any]) -> dict[str, Any]:
    """The figures of one fwrd-bench record that the kit reports."""
    def median(row: dict) -> float:
        return row["tiles_per_s"]["median"]

    return {
        "slide": {k: record["slide"].get(k) for k in ("dimensions", "tiles", "tile_size", "stride", "reader")},
        "decode": {f"{r['workers']} workers": median(r) for r in record.get("decode") or []},
        "inference": {f"{r['label']} b{r['batch_size']}": median(r) for r in record.get("inference") or []},
        "end_to_end": {f"{r['label']} b{r['batch_size']} w{r['workers']}": {
            "tiles_per_s": median(r), "of_inference": r.get("end_to_end_over_inference"),
            "verdict": r.get("verdict"), "runtime_bottleneck": r.get("runtime_bottleneck")}
            for r in record.get("end_to_end") or []},
        "naive": (record.get("naive") or {}).get("tiles_per_s", {}).get("median") if record.get("naive") else None,
        "naive_description": (record.get("naive") or {}).get("description"),
        "dense": [{k: r.get(k) for k in ("label", "workers", "region_side", "margin", "regions", "pixels_ratio",
                                         "per_tile_tiles_per_s", "speedup", "agreement")}
                  | {"tiles_per_s": median(r)} for r in record.get("dense") or []],
        "verdict": record.get("verdict"),
        "skipped": record.get("skipped"),
    }


def render_markdown(record: dict[str, Any]) -> str:
    steps = record["steps"]
    env = (steps.get("environment") or {}).get("result") or {}
    title = env.get("gpu") or ("CPU dry run" if record["dry_run"] else "no GPU seen")
    lines = [f"# fwrd GPU verification kit: {title}", "",
             f"{record['created']}; {record['elapsed_s']} s of a {record['budget_s']} s budget"
             f"{' (dry run on CPU, tiny sizes)' if record['dry_run'] else ''}.", ""]
    if env:
        lines += ["## Environment", "", "| | |", "|---|---|"]
        for key in ("gpu", "compute_capability", "gpu_memory_gib", "nvidia_smi", "torch", "torch_cuda", "cudnn",
                    "pkg:cuda-bindings", "pkg:cuda-python", "tensorrt_importable", "onnxruntime_providers", "cpu",
                    "cpus", "python", "fwrd", "fwrd_source_sha256"):
            if key in env:
                lines.append(f"| {key} | {env[key]} |")
        lines.append("")
    lines += ["## Steps", "", "| step | status | seconds | note |", "|---|---|---|---|"]
    for name, r in steps.items():
        note = r.get("reason") or r.get("error") or ""
        lines.append(f"| {name} | {r['status']} | {r.get('seconds', '')} | {' '.join(str(note).split())[:160]} |")
    lines.append("")
    lines += _levers_lines((steps.get("levers") or {}).get("result") or {})
    pipeline = (steps.get("torch_pipeline") or {}).get("result") or {}
    for run in ("dense", "dense-section"):
        lines += _dense_lines(pipeline.get(run) or {}, run)
    for name in ("cuda_memory", "precision", "levers", "torch_pipeline", "tensorrt_slots", "training"):
        r = steps.get(name) or {}
        if r.get("status") == "ok":
            lines += [f"## {name}", "", "```json", json.dumps(r["result"], indent=1, default=str)[:6000], "```", ""]
    return "\n".join(lines) + "\n"


def _levers_lines(levers: dict[str, Any]) -> list[str]:
    """The levers step's variants in one table (the JSON below may be cut short)."""
    rows = levers.get("variants") or {}
    if not rows:
        return []
    lines = ["## Levers (device-resident tiles; the baseline rerun in the same call)", "",
             "| variant | tiles/s | x baseline | TFLOP/s | of peak | compile s | max abs vs fp32 | within fp16 gate |",
             "|---|---|---|---|---|---|---|---|"]
    for name, r in rows.items():
        if "error" in r:
            lines.append(f"| {name} | failed: {' '.join(str(r['error']).split())[:100]} | | | | | | |")
            continue
        score = r.get("scores") or {}
        lines.append(f"| {name} | {r.get('tiles_per_s')} | {r.get('x_baseline')} | {r.get('tflop_per_s')} | "
                     f"{r.get('of_peak')} | {r.get('compile_seconds', '')} | {score.get('max_abs', '')} | "
                     f"{r.get('within_fp16_gate', '')} |")
    lines.append("")
    for key, title in (("kernel_split", "Kernel time split (torch.profiler)"), ("dense", "Dense per-FLOP efficiency"),
                       ("small_tiles", "Small tiles: batch size")):
        if levers.get(key):
            lines += [f"### {title}", "", "```json", json.dumps(levers[key], indent=1, default=str)[:2500], "```", ""]
    return lines


def _dense_lines(summary: dict[str, Any], run: str) -> list[str]:
    """The dense vs per-tile figures in a line each (the JSON below may be cut short)."""
    title = "Dense scoring vs per tile" + (" (tissue-filled section)" if run == "dense-section" else "")
    if summary.get("status") == "skipped":
        return [f"## {title}", "", f"skipped: {summary.get('reason')}", ""]
    rows = summary.get("dense") or []
    if not rows:
        return []
    lines = [f"## {title}", "",
             "| model | workers | region / margin px | regions | pixels ratio | dense tiles/s | per-tile tiles/s | "
             "dense x | Spearman |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        rho = (r.get("agreement") or {}).get("spearman")
        lines.append(f"| {r['label']} | {r['workers']} | {r['region_side']} / {r['margin']} | {r.get('regions')} | "
                     f"{r.get('pixels_ratio')} | {r['tiles_per_s']} | {r['per_tile_tiles_per_s']} | {r['speedup']} | "
                     f"{rho} |")
    return lines + [""]
