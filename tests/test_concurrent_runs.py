"""Two `fwrd-run` on one OUT (issue 21.9): a slide is scored by one process at a time, the other is told
which process has it, and what every run reports agrees with slides.csv. Locks and markers of killed
runs are removed by the next run."""

from __future__ import annotations

import csv
import fcntl
import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from fwrd.cli.run import command
from fwrd.runtime.outputs.locks import slide_lock
from signals import default_sigint

# fwrd-run with inference slowed to 50 ms a batch, so that a second run meets it mid-slide
SLOW_RUN = (
    "import time\n"
    "from fwrd.runtime.backends.onnxruntime import OnnxRuntimeBackend as B\n"
    "infer = B.infer\n"
    "B.infer = lambda self, tiles: (time.sleep(0.05), infer(self, tiles))[1]\n"
    "from fwrd.cli.run import main\n"
    "main()\n"
)


def _env() -> dict[str, str]:
    root = str(Path(__file__).resolve().parent.parent)
    return {**os.environ, "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}


def _args(slides: Path, model: Path, out: Path, *extra: str) -> list[str]:
    return [str(slides), "--model", str(model), "--out", str(out), "--quiet", "--threads", "1", *extra]


def _rows(out: Path) -> dict[str, dict[str, str]]:
    with open(out / "slides.csv", newline="") as handle:
        return {r["slide"]: r for r in csv.DictReader(handle)}


def _slow_run(slides: Path, model: Path, out: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", SLOW_RUN, *_args(slides, model, out, "--batch-size", "4")],
                            env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=default_sigint)


def _wait_for_journal(run: subprocess.Popen, journal: Path, rows: int = 10) -> None:
    deadline = time.monotonic() + 120
    while not (journal.is_file() and len(journal.read_text().splitlines()) > rows):
        assert run.poll() is None and time.monotonic() < deadline, run.communicate()
        time.sleep(0.05)


def test_a_second_run_on_a_slide_being_scored_is_refused_naming_the_first(synthetic_cohort, standin_model,
                                                                         tmp_path):
    slide = synthetic_cohort.slides[0].path
    out = tmp_path / "out"
    journal = out / f".{slide.stem}.partial" / "tiles.csv.part"
    first = _slow_run(slide, standin_model, out)
    try:
        _wait_for_journal(first, journal)
        holder = f"pid {first.pid} on host {socket.gethostname()}"
        for flag in ("--overwrite", "--resume"):
            second = CliRunner().invoke(command, _args(slide, standin_model, out, flag))
            assert second.exit_code == 1 and second.output.count("Error:") == 1, second.output
            assert f"{slide.stem} is being scored into {out} by another process ({holder}, since " in second.output
            assert journal.is_file()  # the first run's journal is untouched
        plain = CliRunner().invoke(command, _args(slide, standin_model, out))
        assert plain.exit_code == 1 and f"{slide.stem} is being scored now by {holder}" in plain.output
        _, stderr = first.communicate(timeout=180)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == 0, stderr
    assert _rows(out)[slide.stem]["status"] == "ok" and (out / slide.stem / "summary.json").is_file()
    assert sorted(p.name for p in out.iterdir()) == [".slides.lock", "slides.csv", slide.stem]  # no lock left


def test_two_runs_over_one_cohort_say_what_slides_csv_says(synthetic_cohort, standin_model, tmp_path):
    # issue 21.9: with --overwrite one run exited 0 saying "3 ok" while slides.csv said all three failed
    out = tmp_path / "out"
    slides = synthetic_cohort.slides_dir
    first = _slow_run(slides, standin_model, out)
    try:
        _wait_for_journal(first, out / f".{sorted(s.path.stem for s in synthetic_cohort.slides)[0]}.partial"
                          / "tiles.csv.part", rows=4)
        second = CliRunner().invoke(command, _args(slides, standin_model, out, "--overwrite"))
        _, first_err = first.communicate(timeout=300)
    finally:
        if first.poll() is None:
            first.kill()
    rows = _rows(out)
    assert {name: row["status"] for name, row in rows.items()} == {s.path.stem: "ok" for s in synthetic_cohort.slides}
    for output, code in ((first_err, first.returncode), (second.output, second.exit_code)):
        said_ok = set(re.findall(r"\] (\w+): score ", output))
        left = set(re.findall(r"\] (\w+): NOT SCORED: \w+ is being scored into ", output))
        assert said_ok | left == set(rows) and not said_ok & left, output
        assert f"{len(said_ok)} ok, 0 review, 0 failed" in output
        assert code == (1 if left else 0), output
        assert ("left to the other process" in output) == bool(left)
    assert re.findall(r"NOT SCORED", second.output)  # the second run met the first at least once
    for name in rows:
        score = json.loads((out / name / "summary.json").read_text())["score"]
        assert f"{score:.9g}" == rows[name]["score"]
    assert not [p for p in out.iterdir() if p.name.endswith((".partial", ".lock", ".failed.json"))
                and p.name != ".slides.lock"]


def test_a_held_slide_lock_names_its_holder_and_goes_when_released(tmp_path):
    code = ("from fwrd.runtime.outputs.locks import SlideBusy, slide_lock\n"
            f"try:\n    with slide_lock({str(tmp_path)!r}, 'tumor_001'): print('got it')\n"
            "except SlideBusy as exc:\n    print(exc)")

    def other() -> str:
        return subprocess.run([sys.executable, "-c", code], env=_env(), capture_output=True, text=True,
                              timeout=60).stdout

    with slide_lock(tmp_path, "tumor_001"):
        assert (f"tumor_001 is being scored into {tmp_path} by another process (pid {os.getpid()} on host "
                f"{socket.gethostname()}, since ") in other()
    with pytest.raises(RuntimeError):
        with slide_lock(tmp_path, "tumor_001"):
            raise RuntimeError("a failed slide")
    assert list(tmp_path.iterdir()) == []  # released and removed either way
    assert other().strip() == "got it"


def test_locks_and_ray_markers_of_killed_runs_are_removed_by_the_next_run(synthetic_cohort, standin_model, tmp_path):
    slide = synthetic_cohort.slides[2].path
    out = tmp_path / "out"
    assert CliRunner().invoke(command, _args(slide, standin_model, out)).exit_code == 0
    dead_marker, stale_lock = out / ".fwrd-ray-0123abcd", out / f".{slide.stem}.lock"
    dead_marker.write_text(".fwrd-ray-0123abcd")  # a driver killed with -9: its lock ended with it
    stale_lock.write_text('{"pid": 1, "host": "gone"}')
    live_marker = out / ".fwrd-ray-live"
    holder = subprocess.Popen(  # a driver still running: it holds its marker's lock
        [sys.executable, "-c", "import fcntl, os, sys, time\n"
         f"fd = os.open({str(live_marker)!r}, os.O_RDWR | os.O_CREAT)\n"
         "fcntl.flock(fd, fcntl.LOCK_EX); print('held', flush=True); time.sleep(120)"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        result = CliRunner().invoke(command, _args(slide, standin_model, out, "--resume"))
        assert result.exit_code == 0, result.output
        assert not dead_marker.exists() and not stale_lock.exists()
        assert live_marker.exists()
        fd = os.open(live_marker, os.O_RDWR)
        with pytest.raises(BlockingIOError):
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # still its holder's
        os.close(fd)
    finally:
        holder.kill()
        holder.wait()
