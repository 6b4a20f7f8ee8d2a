"""The kit's plumbing: the plan's sizes, the run loop (budget, timing, a failed step recorded and the
others run), the shared checkpoint and slide, and the result files."""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import shutil
import sys
import tempfile
import time
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from gpukit import STEPS, step
from gpukit.report import render_markdown

ROOT = Path(__file__).resolve().parents[3]
PIPELINE_RUNS = ("fp16", "fp16-graphs", "fp32", "compiled", "dense", "dense-section")


@dataclass(frozen=True)
class Sizes:
    """How big each step runs: the GPU plan, or a tiny one for --dry-run on a CPU."""

    tile: int
    slide: int  # synthetic slide side in pixels (level 0)
    section: int  # side of the tissue-filled section for dense scoring
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
    levers_batch: int  # device-resident tiles per pass in the levers step
    levers_iters: int  # passes per timed repeat
    levers_region: int  # side of the region whose pass gives dense per-FLOP efficiency
    small_tile: int  # the small-tile model of the batch sweep ...
    small_batches: tuple[int, ...]  # ... and its batch sizes (which one fills the card)


GPU = Sizes(tile=256, slide=12288, section=8192, stride=64, batch_sizes=(32, 64, 128), workers=16, seconds=3.0,
            repeats=3, per_class=32, cpu_tiles=16, slot_batch=32, slot_batches=40, train_batch=32, train_steps=6,
            patches=480, train_epochs=3, levers_batch=64, levers_iters=20, levers_region=2048, small_tile=64,
            small_batches=(256, 512, 1024))
DRY = Sizes(tile=64, slide=512, section=512, stride=64, batch_sizes=(8,), workers=2, seconds=0.2, repeats=1,
            per_class=2, cpu_tiles=4, slot_batch=4, slot_batches=3, train_batch=4, train_steps=1, patches=8,
            train_epochs=1, levers_batch=2, levers_iters=1, levers_region=128, small_tile=64, small_batches=(2, 4))


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
        self._slides: dict[tuple[int, float], Path] = {}

    # -- plumbing ---------------------------------------------------------------------------------
    def elapsed(self) -> float:
        return time.perf_counter() - self.began

    def log(self, line: str) -> None:
        text = f"[kit {self.elapsed():7.1f}s] {line}"
        print(text, flush=True)
        self._log.write(text + "\n")
        self._log.flush()

    def run(self, name: str) -> None:
        if self.args.steps and name not in self.args.steps:
            return
        left = self.args.budget_s - self.elapsed()
        need = STEPS[name] * (0.1 if self.dry else 1.0)
        if left < need:
            self.records[name] = {"status": "skipped", "reason": f"{left:.0f} s left of the budget, needs ~{need:.0f} s"}
            self.log(f"{name}: skipped (out of time)")
            return
        self.log(f"{name}: start")
        began = time.perf_counter()
        try:
            result = step(name).run(self)
            self.results[name] = result
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

    def left(self) -> float:
        return self.args.budget_s - self.elapsed()

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

    def slide(self, side: int | None = None, tissue_scale: float = 1.0) -> Path:
        """The synthetic slide (the plan's side), or a tissue-filled section (a larger tissue_scale)."""
        side = side or self.sizes.slide
        key = (side, tissue_scale)
        if key not in self._slides:
            from fwrd.slide.synthetic import make_synthetic_slide

            began = time.perf_counter()
            name = f"synthetic_{side}" + (f"_tissue{tissue_scale:g}" if tissue_scale != 1.0 else "")
            self._slides[key] = make_synthetic_slide(self.work / f"{name}.svs", width=side, height=side, mpp=0.243,
                                                     seed=7, tissue_scale=tissue_scale).path
            self.log(f"synthetic {side} x {side} slide (tissue scale {tissue_scale:g}) in "
                     f"{time.perf_counter() - began:.1f} s")
        return self._slides[key]

    # -- results ----------------------------------------------------------------------------------
    def flush(self) -> None:
        record = {"schema": "fwrd-gpu-kit-v1", "created": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
                  "dry_run": self.dry, "sizes": asdict(self.sizes), "budget_s": self.args.budget_s,
                  "elapsed_s": round(self.elapsed(), 1), "steps": self.records}
        write_text(self.out / "kit.json", json.dumps(record, indent=2, default=str) + "\n")
        write_text(self.out / "kit.md", render_markdown(record))

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


def write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="fwrd GPU verification kit")
    parser.add_argument("--out", default=os.environ.get("OUT") or str(ROOT / "gpu-kit-out"))
    parser.add_argument("--dry-run", action="store_true", help="tiny sizes on the CPU; CUDA steps skipped")
    parser.add_argument("--budget-s", type=float, default=480.0, help="stop starting steps after this long")
    parser.add_argument("--steps", nargs="*", choices=tuple(STEPS), default=None, help="only these steps")
    parser.add_argument("--pipeline-runs", nargs="*", choices=PIPELINE_RUNS, default=None,
                        help="only these fwrd-bench runs of the torch_pipeline step")
    parser.add_argument("--checkpoint", default=None, help="model.pt to use instead of an untrained one")
    parser.add_argument("--no-results", action="store_true", help="do not write benchmarks/results/gpu-*")
    args = parser.parse_args(argv)
    kit = Kit(args)
    kit.log(f"fwrd GPU kit{' (dry run)' if kit.dry else ''}: out {kit.out}, budget {args.budget_s:.0f} s")
    for name in STEPS:
        kit.run(name)
    return kit.finish()


if __name__ == "__main__":
    sys.exit(main())
