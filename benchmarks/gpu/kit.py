"""The GPU verification kit: everything fwrd can check and measure on a GPU machine without TensorRT.

    bash benchmarks/gpu/run.sh                 # on the GPU machine (see benchmarks/gpu/README.md)
    bash benchmarks/gpu/run.sh --dry-run       # the same steps on this CPU, tiny sizes, CUDA parts skipped

Steps, in order of importance (each is timed and recorded; one failing never stops the others, and a
step that would not fit in what is left of --budget-s is skipped and says so):

    environment      GPU, driver, CUDA, torch, cuda-bindings; whether TensorRT / onnxruntime-gpu exist
    cuda_memory      tests/test_cuda_memory_device.py: fwrd/runtime/cuda_memory.py on the real device
    precision        fp32 (TF32 off) vs TF32 vs fp16 vs CPU fp32 scores on the export gate's tiles
    torch_pipeline   fwrd-bench: decode only (16 workers), inference only (torch fp16/fp32, batches),
                     the full fwrd-run pipeline, CUDA graphs on/off, and the naive loop; the verdict;
                     and fwrd-bench --dense: dense scoring vs per tile on the same slide (issue 12)
    tensorrt_slots   the TensorRT backend's slot pipeline (pinned/device buffers, two streams) driven
                     by a stand-in engine that runs the scorer with torch on the backend's streams:
                     results vs torch on the CPU, one slot vs two, overlap seen through CUDA events
    training         training steps/s at 256 px with and without bf16 autocast, peak GPU memory, and two
                     short real `fwrd-train --device cuda` runs on the same synthetic patches, fp32 and
                     --amp (bf16 autocast): speed, memory, loss and validation AUROC side by side

Writes OUT/kit.json, OUT/kit.md, OUT/kit.log, OUT/bench-*.json and, unless --dry-run,
benchmarks/results/gpu-<gpu>-<date>.json|md (copies also under OUT, since only OUT comes back from the
project's GPU machine).
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import importlib.util
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
for entry in (str(ROOT), str(HERE), str(ROOT / "benchmarks")):
    if entry not in sys.path:
        sys.path.insert(0, entry)

STEPS = ("environment", "cuda_memory", "precision", "torch_pipeline", "tensorrt_slots", "training")


@dataclass(frozen=True)
class Sizes:
    """How big each step runs: the GPU plan, or a tiny one for --dry-run on a CPU."""

    tile: int
    slide: int  # synthetic slide side in pixels (level 0)
    stride: int
    batch_sizes: tuple[int, ...]
    workers: int
    seconds: float
    repeats: int
    per_class: int  # verification tiles per class (plus as many noise tiles / 2)
    cpu_tiles: int  # of those, scored on the CPU too
    slot_batch: int
    slot_batches: int
    train_batch: int
    train_steps: int
    patches: int  # normal patches for the real fwrd-train runs (a tenth as many tumor)
    train_epochs: int


GPU = Sizes(tile=256, slide=12288, stride=64, batch_sizes=(32, 64, 128), workers=16, seconds=3.0, repeats=2,
            per_class=32, cpu_tiles=16, slot_batch=32, slot_batches=40, train_batch=32, train_steps=6,
            patches=480, train_epochs=3)
DRY = Sizes(tile=64, slide=768, stride=64, batch_sizes=(8,), workers=2, seconds=0.3, repeats=1,
            per_class=4, cpu_tiles=4, slot_batch=4, slot_batches=3, train_batch=4, train_steps=1, patches=20,
            train_epochs=1)
# seconds each step needs at least on the GPU plan (skipped with a reason when less is left)
NEEDS = {"environment": 5, "cuda_memory": 20, "precision": 30, "torch_pipeline": 120, "tensorrt_slots": 30,
         "training": 90}


class Skip(Exception):
    """A step that cannot run here (no CUDA on a dry run, no cuda-python, ...)."""


class Kit:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.dry = bool(args.dry_run)
        self.sizes = DRY if self.dry else GPU
        self.out = Path(args.out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.work = Path(tempfile.mkdtemp(prefix="fwrd-gpu-kit-"))
        self.began = time.perf_counter()
        self.records: dict[str, dict[str, Any]] = {}
        self.results: dict[str, Any] = {}
        self._log = open(self.out / "kit.log", "a", encoding="utf-8")
        self._checkpoint: Path | None = Path(args.checkpoint) if args.checkpoint else None
        self._slide: Path | None = None

    # -- plumbing ---------------------------------------------------------------------------------
    def elapsed(self) -> float:
        return time.perf_counter() - self.began

    def log(self, line: str) -> None:
        text = f"[kit {self.elapsed():7.1f}s] {line}"
        print(text, flush=True)
        self._log.write(text + "\n")
        self._log.flush()

    def run(self, name: str, fn: Callable[[], dict[str, Any]]) -> None:
        if self.args.steps and name not in self.args.steps:
            return
        left = self.args.budget_s - self.elapsed()
        need = NEEDS[name] * (0.1 if self.dry else 1.0)
        if left < need:
            self.records[name] = {"status": "skipped", "reason": f"{left:.0f} s left of the budget, needs ~{need:.0f} s"}
            self.log(f"{name}: skipped (out of time)")
            return
        self.log(f"{name}: start")
        began = time.perf_counter()
        try:
            result = fn()
            record = {"status": "ok", "result": result}
        except Skip as exc:
            record = {"status": "skipped", "reason": str(exc)}
        except BaseException as exc:  # a failed step is recorded; the others still run
            if isinstance(exc, KeyboardInterrupt):
                raise
            record = {"status": "failed", "error": f"{type(exc).__name__}: {exc}",
                      "traceback": traceback.format_exc()[-4000:]}
        record["seconds"] = round(time.perf_counter() - began, 2)
        self.records[name] = record
        self.log(f"{name}: {record['status']} in {record['seconds']} s"
                 + (f" ({record.get('reason') or record.get('error')})" if record["status"] != "ok" else ""))
        self.flush()

    def cuda(self) -> Any:
        import torch

        if self.dry or not torch.cuda.is_available():
            raise Skip("no CUDA device" + (" (dry run)" if self.dry else ""))
        return torch

    def device(self) -> str:
        return "cpu" if self.dry else "cuda"

    def checkpoint(self) -> Path:
        """A checkpoint at the plan's tile size: --checkpoint, or an untrained one made here (seeded)."""
        if self._checkpoint is None:
            import torch

            from fwrd.config import FWRDConfig
            from fwrd.model.checkpoint import save_checkpoint
            from fwrd.model.network import ReverseDistillation

            torch.manual_seed(0)
            path = self.work / f"random_{self.sizes.tile}px.pt"
            config = FWRDConfig(tile_size=self.sizes.tile, mpp=0.243, teacher_weights="random")
            save_checkpoint(path, ReverseDistillation(config.architecture).eval(), config)
            self.log(f"made an untrained {self.sizes.tile} px checkpoint (seed 0): {path.name}")
            self._checkpoint = path
        return self._checkpoint

    def config(self) -> Any:
        from fwrd.config import FWRDConfig
        from fwrd.model.checkpoint import read_checkpoint

        return FWRDConfig.from_dict(read_checkpoint(self.checkpoint())["config"])

    def slide(self) -> Path:
        if self._slide is None:
            from fwrd.slide.synthetic import make_synthetic_slide

            side = self.sizes.slide
            began = time.perf_counter()
            self._slide = make_synthetic_slide(self.work / f"synthetic_{side}.svs", width=side, height=side,
                                               mpp=0.243, seed=7).path
            self.log(f"synthetic {side} x {side} slide in {time.perf_counter() - began:.1f} s")
        return self._slide

    # -- steps ------------------------------------------------------------------------------------
    def environment(self) -> dict[str, Any]:
        import torch

        from fwrd import __version__

        env: dict[str, Any] = {
            "python": platform.python_version(), "machine": platform.machine(), "cpus": os.cpu_count(),
            "cpu": _cpu_name(), "fwrd": __version__, "fwrd_source_sha256": _source_digest(),
            "torch": torch.__version__, "torch_cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
            "cuda_available": torch.cuda.is_available(), "dry_run": self.dry,
        }
        if torch.cuda.is_available():
            p = torch.cuda.get_device_properties(0)
            env.update(gpu=p.name, compute_capability=f"{p.major}.{p.minor}", gpu_memory_gib=round(p.total_memory / 2**30, 1),
                       multiprocessors=p.multi_processor_count)
        env["nvidia_smi"] = _run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total,clocks.max.sm",
                                  "--format=csv,noheader"])
        for dist in ("cuda-bindings", "cuda-python", "tensorrt", "tensorrt-cu12", "tensorrt-cu13", "onnxruntime",
                     "onnxruntime-gpu", "onnx", "numpy", "openslide-bin", "tifffile", "imagecodecs"):
            env[f"pkg:{dist}"] = _dist_version(dist)
        try:
            import tensorrt  # noqa: F401

            env["tensorrt_importable"] = True
        except Exception as exc:
            env["tensorrt_importable"] = f"no ({type(exc).__name__}: {' '.join(str(exc).split())[:120]})"
        try:
            import onnxruntime

            env["onnxruntime_providers"] = onnxruntime.get_available_providers()
        except Exception as exc:
            env["onnxruntime_providers"] = f"no ({type(exc).__name__})"
        try:
            from fwrd.runtime.cuda_memory import device_properties

            env["fwrd_device_properties"] = device_properties()
        except Exception as exc:
            env["fwrd_device_properties"] = f"{type(exc).__name__}: {exc}"
        self.results["environment"] = env
        return env

    def cuda_memory(self) -> dict[str, Any]:
        self.cuda()
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

    def precision(self) -> dict[str, Any]:
        """Scores of the export gate's verification tiles: fp32 (TF32 off) is the reference."""
        import numpy as np

        from fwrd.evaluation.roc import roc_auc
        from fwrd.export.calibration import labelled_synthetic_tiles, noise_tiles
        from fwrd.export.verify import GATES
        from fwrd.runtime.backends import open_backend

        config = self.config()
        tissue, labels = labelled_synthetic_tiles(config, per_class=self.sizes.per_class, seed=11)
        tiles = np.concatenate([tissue, noise_tiles(config, max(2, self.sizes.per_class // 2), seed=11)])
        ckpt = self.checkpoint()
        variants = {"fp32": dict(precision="fp32"), "fp16": dict(precision="fp16")}
        if not self.dry:
            variants["fp32+tf32"] = dict(precision="fp32", tf32=True)
        scores: dict[str, np.ndarray] = {}
        for name, options in variants.items():
            with open_backend(ckpt, "torch", batch_size=32, device=self.device(), **options) as backend:
                scores[name], _ = backend.infer(tiles)
        if not self.dry:
            cpu_n = self.sizes.cpu_tiles
            with open_backend(ckpt, "torch", batch_size=8, device="cpu", precision="fp32") as backend:
                cpu, _ = backend.infer(tiles[:cpu_n])
            scores["cpu fp32"] = cpu
        ref = scores["fp32"].astype(np.float64)
        rows = {}
        for name, got in scores.items():
            if name == "fp32":
                continue
            n = len(got)
            rows[name] = _compare(ref[:n], got.astype(np.float64), labels, roc_auc)
        gate16 = GATES["fp16"]
        fp16 = rows["fp16"]
        result = {"tiles": int(len(tiles)), "tissue_tiles": int(len(tissue)), "reference": "torch fp32, TF32 off",
                  "device": self.device(), "all_finite": bool(all(np.isfinite(v).all() for v in scores.values())),
                  "comparisons": rows,
                  "fp16_within_export_gate": bool(fp16["max_abs"] <= gate16.max_abs_delta
                                                  and fp16["max_rel"] <= gate16.max_rel_delta
                                                  and fp16["spearman"] >= gate16.min_spearman),
                  "score_range": [float(ref.min()), float(ref.max())]}
        if "cpu fp32" in rows:
            result["cuda_fp32_vs_cpu_fp32_within_1e-4"] = bool(rows["cpu fp32"]["max_rel"] <= 1e-4)
        self.results["precision"] = result
        return result

    def torch_pipeline(self) -> dict[str, Any]:
        from fwrd.benchmark.harness import BenchSettings, run_benchmark
        from fwrd.benchmark.report import render_text

        s = self.sizes
        common = dict(models=(self.checkpoint(),), slide=self.slide(), workers=(s.workers,), seconds=s.seconds,
                      repeats=s.repeats, stride=s.stride, device=self.device(), warmup=2)
        half = "torch-fp32" if self.dry else "torch-fp16"  # PyTorch's CPU half convolutions crawl
        runs = {
            # fp16, eager: every batch size, decode, the whole pipeline and the naive loop
            "fp16": BenchSettings(backends=(half,), batch_sizes=s.batch_sizes, checkpoint=self.checkpoint(),
                                  stages=("decode", "inference", "end-to-end", "naive"), cuda_graphs=False, **common),
            # CUDA graphs on the middle batch size
            "fp16-graphs": BenchSettings(backends=(half,), batch_sizes=(s.batch_sizes[len(s.batch_sizes) // 2],),
                                         stages=("inference", "end-to-end"), cuda_graphs=not self.dry, **common),
            # fp32 (TF32 off): inference only, it is several times slower
            "fp32": BenchSettings(backends=("torch-fp32",), batch_sizes=(s.batch_sizes[len(s.batch_sizes) // 2],),
                                  stages=("inference",), cuda_graphs=False, **common),
            # dense scoring vs per tile, end to end on the same slide (its figures go to kit.json only)
            "dense": BenchSettings(backends=(half,), batch_sizes=(s.batch_sizes[len(s.batch_sizes) // 2],),
                                   stages=("end-to-end",), cuda_graphs=not self.dry, dense=True, **common),
        }
        summary: dict[str, Any] = {}
        for name, settings in runs.items():
            if self.args.pipeline_runs and name not in self.args.pipeline_runs:
                continue
            if self.args.budget_s - self.elapsed() < (25 if not self.dry else 1):
                summary[name] = {"status": "skipped", "reason": "out of time"}
                continue
            self.log(f"fwrd-bench {name}")
            record = run_benchmark(settings, log=lambda line: self.log(f"  bench: {line}"))
            record["kit_run"] = name
            if name != "dense":  # the device tool brings back at most 8 files
                (self.out / f"bench-{name}.json").write_text(json.dumps(record, indent=2, default=str) + "\n")
            text = render_text(record)
            self.log("\n" + text)
            summary[name] = _bench_summary(record)
        self.results["torch_pipeline"] = summary
        return summary

    def tensorrt_slots(self) -> dict[str, Any]:
        torch = self.cuda()
        import numpy as np

        import standin_trt
        from fwrd.export.calibration import labelled_synthetic_tiles
        from fwrd.model.fused_scorer import FusedScorer
        from fwrd.model.checkpoint import load_checkpoint
        from fwrd.runtime.backends import tensorrt as trt_backend
        from fwrd.runtime.cuda_memory import device_properties

        s = self.sizes
        model, config = load_checkpoint(self.checkpoint())
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

        with open_backend(self.checkpoint(), "torch", batch_size=8, device="cpu", precision="fp32") as cpu:
            cpu_score, _ = cpu.infer(batches[0][:cpu_n])
        from fwrd.export.verify import GATES

        delta = np.abs(want[0][:cpu_n].astype(np.float64) - cpu_score)
        out["vs_cpu_fp32"] = {"tiles": cpu_n, "max_abs": float(delta.max()),
                              "within_fp16_gate": bool(delta.max() <= GATES["fp16"].max_abs_delta)}
        out["results_equal_plain_torch"] = bool(max(out["slots_1"]["max_rel_vs_plain_torch"],
                                                    out["slots_2"]["max_rel_vs_plain_torch"]) <= 1e-3)
        self.results["tensorrt_slots"] = out
        return out

    def training(self) -> dict[str, Any]:
        import bench_training

        s = self.sizes
        rows = []
        for amp in (False, True):
            if amp and self.dry:
                continue
            rows.append(bench_training.measure(s.tile, s.train_batch, s.train_steps, device=self.device(), amp=amp))
            self.log(f"training steps: {rows[-1]}")
        result: dict[str, Any] = {"steps": rows}
        # a short real fwrd-train on synthetic patches, on the device
        from fwrd.demo import DemoPlan, run_step

        plan = DemoPlan(n_tumor_slides=1, n_normal_slides=1, slide_size=max(2048, 16 * s.tile), tile=s.tile,
                        normal_patches=s.patches, tumor_patches=max(2, s.patches // 10), epochs=s.train_epochs,
                        batch_size=s.train_batch, tumor_scale=1.8)
        root = self.work / "train"
        steps = dict(plan.steps(root))
        for step in ("synth", "patches"):
            run_step(step, steps[step], echo=self.log)
        import torch

        runs = {}
        for amp in (False, True):  # the same patches, seed and epochs: fp32 against --amp (bf16 autocast)
            if amp and self.dry:  # bf16 on a CPU is slow; tests/test_train_cli.py covers --amp there
                continue
            if torch.cuda.is_available() and not self.dry:
                torch.cuda.reset_peak_memory_stats()
            out = root / ("model-amp.pt" if amp else "model.pt")
            began = time.perf_counter()
            run_step("train", _replace_out(steps["train"], out) + ["--device", self.device()]
                     + (["--amp"] if amp else []), echo=self.log)
            history = [json.loads(line) for line in out.with_suffix(".history.jsonl").read_text().splitlines()]
            runs["amp" if amp else "fp32"] = {
                "seconds": round(time.perf_counter() - began, 1),
                "peak_gpu_memory_gib": (round(torch.cuda.max_memory_allocated() / 2**30, 2)
                                        if torch.cuda.is_available() and not self.dry else None),
                "epochs": [{k: h[k] for k in ("epoch", "loss", "val_auroc", "val_accuracy", "patches_per_second")}
                           for h in history],
            }
        result["fwrd_train"] = {"epochs": plan.epochs, "patches": s.patches + max(2, s.patches // 10),
                                "tile": s.tile, "device": self.device(), **runs}
        self.results["training"] = result
        return result

    # -- results ----------------------------------------------------------------------------------
    def flush(self) -> None:
        record = {"schema": "fwrd-gpu-kit-v1", "created": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
                  "dry_run": self.dry, "sizes": asdict(self.sizes), "budget_s": self.args.budget_s,
                  "elapsed_s": round(self.elapsed(), 1), "steps": self.records}
        _write(self.out / "kit.json", json.dumps(record, indent=2, default=str) + "\n")
        _write(self.out / "kit.md", render_markdown(record))

    def finish(self) -> int:
        self.flush()
        record = json.loads((self.out / "kit.json").read_text())
        if not self.dry and not self.args.no_results:
            gpu = (self.results.get("environment") or {}).get("gpu") or "gpu"
            stem = f"gpu-{_slug(gpu)}-{datetime.date.today().isoformat()}"
            results = ROOT / "benchmarks" / "results"
            results.mkdir(parents=True, exist_ok=True)
            for suffix in (".json", ".md"):
                shutil.copyfile(self.out / f"kit{suffix}", results / f"{stem}{suffix}")
            self.log(f"wrote benchmarks/results/{stem}.json|md (copies of OUT/kit.json|md)")
        shutil.rmtree(self.work, ignore_errors=True)
        failed = [k for k, v in record["steps"].items() if v["status"] == "failed"]
        self.log(f"done in {self.elapsed():.0f} s; " + (f"FAILED: {', '.join(failed)}" if failed else "no step failed"))
        return 1 if failed else 0


# -- helpers ---------------------------------------------------------------------------------------
def _compare(ref: Any, got: Any, labels: Any, roc_auc: Callable) -> dict[str, Any]:
    import numpy as np
    from scipy.stats import spearmanr

    delta = np.abs(got - ref)
    rel = delta / np.maximum(np.abs(ref), 1e-6)
    row = {"tiles": int(len(got)), "max_abs": float(delta.max()), "max_rel": float(rel.max()),
           "mean_abs": float(delta.mean()), "spearman": float(spearmanr(ref, got).statistic) if len(got) > 2 else None,
           "finite": bool(np.isfinite(got).all())}
    n = min(len(got), len(labels))
    if n and len(set(labels[:n].tolist())) == 2:  # labels: is_tumor
        row["auroc_change"] = float(abs(roc_auc(labels[:n], got[:n]) - roc_auc(labels[:n], ref[:n])))
    return row


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


def _bench_summary(record: dict[str, Any]) -> dict[str, Any]:
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
    lines += _dense_lines(((steps.get("torch_pipeline") or {}).get("result") or {}).get("dense") or {})
    for name in ("cuda_memory", "precision", "torch_pipeline", "tensorrt_slots", "training"):
        r = steps.get(name) or {}
        if r.get("status") == "ok":
            lines += [f"## {name}", "", "```json", json.dumps(r["result"], indent=1, default=str)[:6000], "```", ""]
    return "\n".join(lines) + "\n"


def _replace_out(args: list[Any], out: Path) -> list[Any]:
    """A demo step's arguments with its --out value replaced."""
    at = args.index("--out") + 1
    return [*args[:at], out, *args[at + 1:]]


def _dense_lines(summary: dict[str, Any]) -> list[str]:
    """The dense vs per-tile figures in a line each (the JSON below may be cut short)."""
    if summary.get("status") == "skipped":
        return ["## Dense scoring vs per tile", "", f"skipped: {summary.get('reason')}", ""]
    rows = summary.get("dense") or []
    if not rows:
        return []
    lines = ["## Dense scoring vs per tile (issue 12)", "",
             "| model | workers | region / margin px | dense tiles/s | per-tile tiles/s | dense x | Spearman |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        rho = (r.get("agreement") or {}).get("spearman")
        lines.append(f"| {r['label']} | {r['workers']} | {r['region_side']} / {r['margin']} | {r['tiles_per_s']} | "
                     f"{r['per_tile_tiles_per_s']} | {r['speedup']} | {rho} |")
    return lines + [""]


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _run(cmd: list[str]) -> str | None:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=30).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def _dist_version(name: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _source_digest() -> str:
    """Which fwrd code ran: a hash over fwrd/**/*.py (the GPU machine gets a copy without .git)."""
    digest = hashlib.sha256()
    for path in sorted((ROOT / "fwrd").rglob("*.py")):
        digest.update(str(path.relative_to(ROOT)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="fwrd GPU verification kit")
    parser.add_argument("--out", default=os.environ.get("OUT") or str(ROOT / "gpu-kit-out"))
    parser.add_argument("--dry-run", action="store_true", help="tiny sizes on the CPU; CUDA steps skipped")
    parser.add_argument("--budget-s", type=float, default=480.0, help="stop starting steps after this long")
    parser.add_argument("--steps", nargs="*", choices=STEPS, default=None, help="only these steps")
    parser.add_argument("--pipeline-runs", nargs="*", choices=("fp16", "fp16-graphs", "fp32", "dense"), default=None,
                        help="only these fwrd-bench runs of the torch_pipeline step")
    parser.add_argument("--checkpoint", default=None, help="model.pt to use instead of an untrained one")
    parser.add_argument("--no-results", action="store_true", help="do not write benchmarks/results/gpu-*")
    args = parser.parse_args(argv)
    kit = Kit(args)
    kit.log(f"fwrd GPU kit{' (dry run)' if kit.dry else ''}: out {kit.out}, budget {args.budget_s:.0f} s")
    for name in STEPS:
        kit.run(name, getattr(kit, name))
    return kit.finish()


if __name__ == "__main__":
    sys.exit(main())
