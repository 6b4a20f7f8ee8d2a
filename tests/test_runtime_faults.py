"""`fwrd-run` as an operator meets it: SIGTERM from a scheduler, a full disk, temp files of killed writes.

Each runs the real command in a subprocess, so signals and OS limits act on a real process.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from fwrd.atomic import atomic_open, remove_stale_temps
from fwrd.cli.run import command
from signals import default_sigint

# fwrd-run, with inference slowed to 20 ms a batch so that a signal lands mid-slide
SLOW_RUN = (
    "import time\n"
    "from fwrd.runtime.backends.onnxruntime import OnnxRuntimeBackend as B\n"
    "infer = B.infer\n"
    "B.infer = lambda self, tiles: (time.sleep(0.02), infer(self, tiles))[1]\n"
    "from fwrd.cli.run import main\n"
    "main()\n"
)
RUN = "from fwrd.cli.run import main; main()"


def _env() -> dict[str, str]:
    root = str(Path(__file__).resolve().parent.parent)
    return {**os.environ, "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}


def _file_size_limit(limit: int):
    """preexec_fn: writes past `limit` bytes fail with EFBIG (a full disk, as far as the writer can tell)."""
    def apply() -> None:
        import resource

        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
    return apply


def _args(slide: Path, model: Path, out: Path, *extra: str) -> list[str]:
    return [str(slide), "--model", str(model), "--out", str(out), "--quiet", "--threads", "1", *extra]


@pytest.mark.parametrize("signum, code, word", [(signal.SIGTERM, 143, "terminated"), (signal.SIGINT, 130, "interrupted")])
def test_a_signal_flushes_the_journal_says_resume_and_exits(synthetic_cohort, standin_model, tmp_path,
                                                           signum, code, word):
    # issue 11.8 (SIGTERM from Slurm or Kubernetes, like Ctrl-C) and 14.7 (say to rerun with --resume)
    slide = synthetic_cohort.slides[0].path
    out = tmp_path / "out"
    journal = out / f".{slide.stem}.partial" / "tiles.csv.part"
    run = subprocess.Popen(
        [sys.executable, "-c", SLOW_RUN, *_args(slide, standin_model, out, "--batch-size", "4")],
        env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=default_sigint,
    )
    deadline = time.monotonic() + 120
    while not (journal.is_file() and len(journal.read_text().splitlines()) > 20):
        assert run.poll() is None and time.monotonic() < deadline, run.communicate()
        time.sleep(0.05)
    run.send_signal(signum)
    _, stderr = run.communicate(timeout=60)
    assert run.returncode == code, stderr
    assert stderr.strip().splitlines()[-1] == f"{word}; rerun with --resume to continue"
    assert "Traceback" not in stderr
    journaled = len(journal.read_text().splitlines()) - 2
    assert journaled >= 20 - 2 and not (out / slide.stem).exists()

    resumed = CliRunner().invoke(command, _args(slide, standin_model, out, "--resume"))
    assert resumed.exit_code == 0, resumed.output
    import json

    summary = json.loads((out / slide.stem / "summary.json").read_text())
    assert summary["tiles_resumed"] == journaled and summary["tiles_this_run"] == summary["tiles_scored"] - journaled


def test_full_disk_names_the_file_being_written(synthetic_cohort, standin_model, tmp_path):
    slide = synthetic_cohort.slides[2].path
    out = tmp_path / "out"
    done = subprocess.run([sys.executable, "-c", RUN, *_args(slide, standin_model, out)],
                          env=_env(), capture_output=True, text=True, timeout=300, preexec_fn=_file_size_limit(0))
    assert done.returncode == 1, done.stderr
    assert "File too large" in done.stderr and "Traceback" not in done.stderr
    assert f"{out / ('.' + slide.stem + '.partial') / 'tiles.csv.part'}" in done.stderr  # the journal, named


def test_resume_with_nothing_to_do_works_on_a_full_disk(synthetic_cohort, standin_model, tmp_path):
    # issue 11.9: the final rewrite of slides.csv failed although nothing had changed
    out = tmp_path / "out"
    assert CliRunner().invoke(command, _args(synthetic_cohort.slides_dir, standin_model, out)).exit_code == 0
    table = (out / "slides.csv").read_bytes()
    done = subprocess.run(
        [sys.executable, "-c", RUN, *_args(synthetic_cohort.slides_dir, standin_model, out, "--resume")],
        env=_env(), capture_output=True, text=True, timeout=300, preexec_fn=_file_size_limit(0),
    )
    assert done.returncode == 0, done.stderr
    assert (out / "slides.csv").read_bytes() == table


def test_atomic_write_errors_name_the_final_file(tmp_path):
    import errno

    target = tmp_path / "heatmap.npy"
    with pytest.raises(OSError) as caught:
        with atomic_open(target, "wb"):
            raise OSError(errno.ENOSPC, "No space left on device")  # what write() raises: no file name
    assert caught.value.errno == errno.ENOSPC and caught.value.filename == str(target)
    assert list(tmp_path.iterdir()) == []


def test_stale_temp_files_are_removed_by_the_next_run(synthetic_cohort, standin_model, tmp_path):
    # issue 11.10: `.*.tmp` of killed writes stayed forever
    slide = synthetic_cohort.slides[2].path
    out = tmp_path / "out"
    assert CliRunner().invoke(command, _args(slide, standin_model, out)).exit_code == 0
    staging = out / f".{slide.stem}.partial"
    staging.mkdir()
    stale = [out / ".slides.csv.k3j9x_2a.tmp", out / slide.stem / ".overlay.png.abcdefgh.tmp",
             staging / ".tiles.csv.0a1b2c3d.tmp"]
    for path in stale:
        path.write_bytes(b"\0" * 1000)
    keep = out / "notes.tmp"
    keep.write_text("not ours")
    assert CliRunner().invoke(command, _args(slide, standin_model, out, "--resume")).exit_code == 0
    assert not any(p.exists() for p in stale) and keep.exists()


def test_remove_stale_temps_only_touches_temp_names(tmp_path):
    names = [".model.pt.abcd1234.tmp", ".model.last.pt.x_y_z_12.tmp", ".rd.onnx.abcdefgh.tmp", "model.pt",
             ".model.pt.tmp", "model.pt.abcdefgh.tmp"]
    for name in names:
        (tmp_path / name).write_text("x")
    removed = remove_stale_temps(tmp_path, ["model.pt", "model.last.pt"])
    assert sorted(p.name for p in removed) == [".model.last.pt.x_y_z_12.tmp", ".model.pt.abcd1234.tmp"]
    assert remove_stale_temps(tmp_path) == [tmp_path / ".rd.onnx.abcdefgh.tmp"]
    assert remove_stale_temps(tmp_path / "missing") == []
