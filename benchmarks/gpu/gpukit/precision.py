"""Scores of the export gate's verification tiles on the torch backend: fp32 (TF32 off) is the reference,
against fp16, TF32 and fp32 on the CPU (a proxy for the TensorRT fp16 gate)."""

from __future__ import annotations

from typing import Any

from gpukit.core import Kit
from gpukit.report import compare, within_gate


def run(kit: Kit) -> dict[str, Any]:
    import numpy as np

    from fwrd.evaluation.roc import roc_auc
    from fwrd.export.calibration import labelled_synthetic_tiles, noise_tiles
    from fwrd.export.verify import GATES
    from fwrd.runtime.backends import open_backend

    config = kit.config()
    tissue, labels = labelled_synthetic_tiles(config, per_class=kit.sizes.per_class, seed=11)
    tiles = np.concatenate([tissue, noise_tiles(config, max(2, kit.sizes.per_class // 2), seed=11)])
    ckpt = kit.checkpoint()
    variants: dict[str, dict[str, Any]] = {"fp32": dict(precision="fp32"), "fp16": dict(precision="fp16")}
    if not kit.dry:
        variants["fp32+tf32"] = dict(precision="fp32", tf32=True)
    scores: dict[str, np.ndarray] = {}
    for name, options in variants.items():
        with open_backend(ckpt, "torch", batch_size=32, device=kit.device(), **options) as backend:
            scores[name], _ = backend.infer(tiles)
    if not kit.dry:
        cpu_n = kit.sizes.cpu_tiles
        with open_backend(ckpt, "torch", batch_size=8, device="cpu", precision="fp32") as backend:
            cpu, _ = backend.infer(tiles[:cpu_n])
        scores["cpu fp32"] = cpu
    ref = scores["fp32"].astype(np.float64)
    rows = {name: compare(ref[:len(got)], got, labels, roc_auc) for name, got in scores.items() if name != "fp32"}
    result = {"tiles": int(len(tiles)), "tissue_tiles": int(len(tissue)), "reference": "torch fp32, TF32 off",
              "device": kit.device(), "all_finite": bool(all(np.isfinite(v).all() for v in scores.values())),
              "comparisons": rows, "fp16_within_export_gate": within_gate(rows["fp16"], GATES["fp16"]),
              "score_range": [float(ref.min()), float(ref.max())]}
    if "cpu fp32" in rows:
        result["cuda_fp32_vs_cpu_fp32_within_1e-4"] = bool(rows["cpu fp32"]["max_rel"] <= 1e-4)
    return result
