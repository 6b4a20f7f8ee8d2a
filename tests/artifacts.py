"""The models the tests share, each made once: trained the way the demo trains, and its exports.

Training a model and exporting it four ways is most of what the suite would otherwise repeat, and a
training run leaves gigabytes in the process that ran it (glibc keeps freed memory). So each artifact
is built by a child process (`python tests/artifacts.py NAME DIR`), into a folder of its own, under a
file lock, and the test process only ever holds paths:

- By default the folder lives in the session's temporary folder: one build per test run, shared by
  pytest-xdist workers (they share that folder's parent), removed with it.
- `FWRD_TEST_CACHE=DIR` keeps the folders across runs (for a developer's edit-test loop). An artifact
  is reused only while its manifest still holds: every fwrd source file its build imported, this file,
  the artifacts it was made from and the versions of Python, torch, onnx and ONNX Runtime are what they
  were. Anything else builds it again.

    path = artifact("export_fp32", tmp_path_factory)   # folder with rd_fp32.onnx and result.json

`FWRD_TEST_CACHE=DIR python tests/artifacts.py --prebuild` builds them all ahead of a run: CI does so beside
the fast tier, which leaves one of the two cores idle, so the slow tier finds them made.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

HERE = Path(__file__).resolve()
REPO = HERE.parent.parent
MANIFEST = "manifest.json"
LIBRARIES = ("torch", "onnx", "onnxruntime", "numpy", "onnxscript")


@dataclass(frozen=True)
class Spec:
    """What an artifact needs and what it is: the artifacts it is made from, and how."""

    needs: tuple[str, ...] = ()
    precision: str | None = None  # exports only
    target: str | None = None


SPECS = {
    "trained": Spec(),
    "export_fp32": Spec(("trained",), "fp32"),
    "export_fp16": Spec(("trained",), "fp16"),
    "export_int8": Spec(("trained",), "int8"),
    "export_int8_trt": Spec(("trained",), "int8", "tensorrt"),
}


# --- the parent: find, check or build ----------------------------------------------------------------
def cache_root(tmp_path_factory) -> Path:
    """FWRD_TEST_CACHE, else a folder beside this run's basetemp that every xdist worker of the run shares."""
    given = os.environ.get("FWRD_TEST_CACHE")
    if given:
        return Path(given).expanduser().resolve()
    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):  # workers' basetemps are siblings below the run's own
        base = base.parent
    return base / "artifacts"


def artifact(name: str, tmp_path_factory) -> Path:
    """The folder of artifact `name`, built (with what it needs) when missing or stale."""
    spec = SPECS[name]
    inputs = {need: artifact(need, tmp_path_factory) for need in spec.needs}
    root = cache_root(tmp_path_factory)
    root.mkdir(parents=True, exist_ok=True)
    folder = root / name
    with _locked(root / f".{name}.lock"):
        if _still_valid(folder, inputs):
            return folder
        _build(name, folder, inputs)
    return folder


@contextlib.contextmanager
def _locked(path: Path):
    with open(path, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _still_valid(folder: Path, inputs: dict[str, Path]) -> bool:
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError):
        return False
    if manifest.get("versions") != _versions() or manifest.get("inputs") != _input_digests(inputs):
        return False
    return all(_sha256(REPO / rel) == digest for rel, digest in manifest.get("sources", {}).items())


def _build(name: str, folder: Path, inputs: dict[str, Path]) -> None:
    if folder.is_symlink() or (folder.exists() and not (folder / MANIFEST).is_file()):
        # FWRD_TEST_CACHE may point at a folder of the user's: replace only an artifact folder this file made
        raise RuntimeError(f"{folder} is not a test artifact folder (no {MANIFEST}): not replacing it")
    began = time.perf_counter()
    scratch = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=folder.parent))
    try:
        # Two threads everywhere: torch's training and int8 calibration are not bit-identical across thread
        # counts (one thread trains a model whose int8 export flips 5 of 100 calls, two threads 1), and the
        # tests' expectations were measured on two.
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
                   OMP_NUM_THREADS="2")
        args = [sys.executable, str(HERE), name, str(scratch), *(f"{k}={v}" for k, v in inputs.items())]
        done = subprocess.run(args, capture_output=True, text=True, env=env, cwd=REPO)
        if done.returncode != 0:
            raise RuntimeError(f"building test artifact {name!r} failed:\n{done.stdout[-4000:]}\n{done.stderr[-8000:]}")
        sources = json.loads((scratch / "sources.json").read_text())
        manifest = {"versions": _versions(), "inputs": _input_digests(inputs), "seconds": time.perf_counter() - began,
                    "sources": {rel: _sha256(REPO / rel) for rel in sorted(sources)}}
        (scratch / MANIFEST).write_text(json.dumps(manifest, indent=1))
        if folder.exists():
            shutil.rmtree(folder)
        scratch.rename(folder)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _versions() -> dict[str, str]:
    found = {"python": sys.version.split()[0]}
    for library in LIBRARIES:
        try:
            found[library] = importlib.metadata.version(library)
        except importlib.metadata.PackageNotFoundError:
            found[library] = ""
    return found


def _input_digests(inputs: dict[str, Path]) -> dict[str, str]:
    return {name: _sha256(path / MANIFEST) for name, path in sorted(inputs.items())}


def _sha256(path: Path) -> str:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return ""


# --- what the tests get back ---------------------------------------------------------------------
def checkpoint(folder: Path) -> tuple[Path, list]:
    """(model.pt, epoch records) of the `trained` artifact."""
    from fwrd.training.trainer import EpochRecord

    history = (folder / "model.history.jsonl").read_text().splitlines()
    return folder / "model.pt", [EpochRecord(**json.loads(line)) for line in history]


def export_result(folder: Path):
    """(ExportResult, log lines) of an export artifact, as `export_model` returned them."""
    from fwrd.export.gate import VerifyReport
    from fwrd.export.pipeline import ExportResult

    saved = json.loads((folder / "result.json").read_text())
    result = saved["result"]
    for key in ("report", "regions"):
        if result.get(key) is not None:
            known = {f.name for f in fields(VerifyReport)}
            report = {k: v for k, v in result[key].items() if k in known}
            report["batches"] = tuple(report["batches"])
            result[key] = VerifyReport(**report)
    result["onnx"] = folder / Path(result["onnx"]).name
    return ExportResult(**result), saved["lines"]


# --- the child: build one artifact -----------------------------------------------------------------
def _build_trained(out: Path) -> None:
    import warnings

    from fwrd.demo import DemoPlan, run_step
    from fwrd.slide.synthetic import make_cohort

    # The session's cohort (tests/conftest.py: synthetic_cohort) is made by the same call; the test
    # cohort is smaller than the demo's (2048 px slides), so fewer patches, same 10:1 ratio.
    work = out / "work"
    make_cohort(work / "cohort", n_tumor=2, n_normal=1, width=2048, height=2048, fmt="svs", seed=0)
    # One epoch: the demo's second epoch ties its first, so its model.pt is this one (an epoch less to wait for).
    plan = DemoPlan(normal_patches=160, tumor_patches=16, epochs=1)
    steps = dict(plan.steps(work))
    quiet = lambda line: None  # noqa: E731
    run_step("patches", steps["patches"], echo=quiet)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run_step("train", steps["train"], echo=quiet)
    for produced in ("model.pt", "model.history.jsonl"):
        (work / produced).rename(out / produced)
    (work / "cohort" / "slides").rename(out / "slides")  # int8 calibrates on them, as the demo does
    shutil.rmtree(work)


def _build_export(out: Path, spec: Spec, trained: Path) -> None:
    from fwrd.export.pipeline import ExportSettings, export_model

    name = f"{spec.precision}_{spec.target}" if spec.target else spec.precision
    lines: list[str] = []
    calibration = [trained / "slides"] if spec.precision == "int8" else []
    settings = ExportSettings(checkpoint=trained / "model.pt", output=out / f"rd_{name}.onnx",
                              precision=spec.precision, target=spec.target, calibration=calibration)
    result = export_model(settings, log=lines.append)
    data = asdict(result)
    for key in ("report", "regions"):
        report = getattr(result, key)
        data[key] = None if report is None else report.to_dict()
    data["onnx"] = str(result.onnx)
    (out / "result.json").write_text(json.dumps({"result": data, "lines": lines}, indent=1, default=str))


def _main(argv: list[str]) -> None:
    name, out = argv[0], Path(argv[1])
    inputs = dict(arg.split("=", 1) for arg in argv[2:])
    spec = SPECS[name]
    if name == "trained":
        _build_trained(out)
    else:
        _build_export(out, spec, Path(inputs["trained"]))
    imported = {Path(m.__file__).resolve() for m in list(sys.modules.values())
                if getattr(m, "__file__", None) and m.__name__.split(".")[0] == "fwrd"}
    sources = sorted(str(p.relative_to(REPO)) for p in imported | {HERE} if p.is_relative_to(REPO))
    (out / "sources.json").write_text(json.dumps(sources))


def prebuild() -> None:
    """Every artifact into FWRD_TEST_CACHE (each under its lock, so a test run beside it waits, never races)."""
    if not os.environ.get("FWRD_TEST_CACHE"):
        sys.exit("--prebuild needs FWRD_TEST_CACHE: the folder the test run will read the artifacts from")
    for name in SPECS:
        began = time.perf_counter()
        try:
            artifact(name, None)
        except RuntimeError as exc:
            sys.exit(f"artifact {name}: {exc}")
        print(f"artifact {name}: ready in {time.perf_counter() - began:.0f} s", flush=True)


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    if sys.argv[1:] == ["--prebuild"]:
        prebuild()
    else:
        _main(sys.argv[1:])
