"""Hostile and shared output folders (issue 26.1, 26.2, 26.4, 26.6; issue 20.5, 20.7).

fwrd writes and deletes only what it owns in OUT (no planted link is followed, no user's folder is
replaced), names outputs after a plain path component the user gave, leaves nothing behind after a
failed slide (and retries it when the same command runs again), refuses slides that are not files and
thread counts beyond the machine, and keeps what it prints and tabulates inert.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from fwrd.cli.run import command
from fwrd.runtime.settings import usable_cpus

RUN = "from fwrd.cli.run import main; main()"


def _run(*args):
    return CliRunner().invoke(command, [str(a) for a in args] + ["--quiet", "--threads", "1"])


def _env() -> dict[str, str]:
    root = str(Path(__file__).resolve().parent.parent)
    return {**os.environ, "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}


def _tree(folder: Path) -> dict[str, bytes | str]:
    """Every entry under `folder` (links as their target, files as their bytes): what must not change."""
    found: dict[str, bytes | str] = {}
    for path in sorted(folder.rglob("*")):
        key = str(path.relative_to(folder))
        found[key] = f"-> {os.readlink(path)}" if path.is_symlink() else path.read_bytes() if path.is_file() else "dir"
    return found


def _rows(out: Path) -> dict[str, dict[str, str]]:
    with open(out / "slides.csv", newline="", encoding="utf-8") as handle:
        return {r["slide"]: r for r in csv.DictReader(handle)}


# -- 26.1: writes through planted symlinks ----------------------------------------------------------
def test_a_journal_planted_as_a_link_is_replaced_never_written_through(synthetic_cohort, standin_model, tmp_path):
    slide = synthetic_cohort.slides[2].path
    out, victim = tmp_path / "out", tmp_path / "victim.txt"
    victim.write_bytes(b"someone's file, no newline at the end")
    staging = out / f".{slide.stem}.partial"
    staging.mkdir(parents=True)
    (staging / "tiles.csv.part").symlink_to(victim)
    result = _run(slide, "--model", standin_model, "--out", out, "--resume")
    assert result.exit_code == 0, result.output
    assert victim.read_bytes() == b"someone's file, no newline at the end"  # neither truncated nor overwritten
    assert json.loads((out / slide.stem / "summary.json").read_text())["tiles_resumed"] == 0  # scored afresh
    assert not staging.exists()


@pytest.mark.parametrize("flag", ["--resume", "--overwrite"])
def test_a_staging_folder_planted_as_a_link_is_refused(synthetic_cohort, standin_model, tmp_path, flag):
    slide = synthetic_cohort.slides[2].path
    out, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "tiles.csv").write_text("theirs\n")
    out.mkdir()
    (out / f".{slide.stem}.partial").symlink_to(elsewhere)
    before = _tree(elsewhere)
    result = _run(slide, "--model", standin_model, "--out", out, flag)
    assert result.exit_code == 1 and result.output.count("Error:") == 1 and "Traceback" not in result.output
    assert f".{slide.stem}.partial is a symbolic link" in result.output
    assert _tree(elsewhere) == before
    assert not os.path.lexists(out / slide.stem)


def test_a_dangling_table_lock_link_is_refused(synthetic_cohort, standin_model, tmp_path):
    out, target = tmp_path / "out", tmp_path / "made-by-fwrd"
    out.mkdir()
    (out / ".slides.lock").symlink_to(target)
    result = _run(synthetic_cohort.slides[2].path, "--model", standin_model, "--out", out)
    assert result.exit_code == 1 and ".slides.lock is a symbolic link" in result.output
    assert not os.path.lexists(target)


def test_an_output_file_planted_as_a_link_is_replaced_not_written_through(synthetic_cohort, standin_model,
                                                                          tmp_path):
    out, victim = tmp_path / "out", tmp_path / "victim.csv"
    victim.write_text("someone's table\n")
    out.mkdir()
    (out / "slides.csv").symlink_to(victim)
    assert _run(synthetic_cohort.slides[2].path, "--model", standin_model, "--out", out).exit_code == 0
    assert victim.read_text() == "someone's table\n"
    assert not (out / "slides.csv").is_symlink() and list(_rows(out)) == [synthetic_cohort.slides[2].path.stem]


# -- 26.2: deleting what fwrd did not write; 20.7: names from the path given -------------------------
@pytest.mark.parametrize("name", ["..svs", "tumor\x1b[2J.svs", ".hidden.svs", "slides.csv.svs", "a\\b.svs"])
def test_slide_names_that_cannot_name_a_folder_are_refused(synthetic_cohort, standin_model, tmp_path, name):
    out = tmp_path / "out"
    assert _run(synthetic_cohort.slides[2].path, "--model", standin_model, "--out", out).exit_code == 0
    before = _tree(out)
    link = tmp_path / "in" / name
    link.parent.mkdir()
    link.symlink_to(synthetic_cohort.slides[2].path)
    result = _run(link, "--model", standin_model, "--out", out, "--overwrite")
    assert result.exit_code == 1 and result.output.count("Error:") == 1
    assert "cannot name an output folder" in result.output and "\x1b" not in result.output
    assert _tree(out) == before  # OUT as it was


@pytest.mark.parametrize("flag", [None, "--resume", "--overwrite"])
def test_a_users_own_folder_of_a_slides_name_is_never_replaced(synthetic_cohort, standin_model, tmp_path, flag):
    slide = synthetic_cohort.slides[2].path
    out = tmp_path / "out"
    mine = out / slide.stem
    mine.mkdir(parents=True)
    (mine / "notes.txt").write_text("my own notes")
    result = _run(slide, "--model", standin_model, "--out", out, *([flag] if flag else []))
    assert result.exit_code == 1 and result.output.count("Error:") == 1
    assert f"{mine} is not a folder fwrd-run wrote" in result.output
    assert _tree(mine) == {"notes.txt": b"my own notes"}


def test_an_empty_folder_of_a_slides_name_may_be_filled(synthetic_cohort, standin_model, tmp_path):
    slide = synthetic_cohort.slides[2].path
    (tmp_path / "out" / slide.stem).mkdir(parents=True)
    assert _run(slide, "--model", standin_model, "--out", tmp_path / "out", "--overwrite").exit_code == 0
    assert (tmp_path / "out" / slide.stem / "summary.json").is_file()


def test_a_linked_slide_is_named_after_the_link(synthetic_cohort, standin_model, tmp_path):
    link = tmp_path / "case_17.svs"
    link.symlink_to(synthetic_cohort.slides[2].path)
    out = tmp_path / "out"
    assert _run(link, "--model", standin_model, "--out", out).exit_code == 0
    assert json.loads((out / "case_17" / "summary.json").read_text())["slide"] == "case_17"
    assert list(_rows(out)) == ["case_17"] and not (out / synthetic_cohort.slides[2].path.stem).exists()


# -- 20.5: failure leftovers -------------------------------------------------------------------------
def test_a_failed_slide_leaves_nothing_says_so_once_and_is_retried(synthetic_cohort, standin_model, tmp_path):
    bad, out = tmp_path / "case_3.svs", tmp_path / "out"
    bad.write_text("not a slide")
    args = [str(bad), "--model", str(standin_model), "--out", str(out), "--threads", "1"]  # progress on
    for _ in range(2):  # the same command again: tried again, never "already holds outputs"
        result = CliRunner().invoke(command, args)
        assert result.exit_code == 1 and result.output.count("not a slide OpenSlide can read") == 1, result.output
        assert sorted(p.name for p in out.iterdir()) == [".case_3.failed.json", ".slides.lock", "slides.csv"]
        assert _rows(out)["case_3"]["status"] == "failed"
    bad.write_bytes(synthetic_cohort.slides[2].path.read_bytes())  # fixed: the same command scores it
    result = CliRunner().invoke(command, args)
    assert result.exit_code == 0, result.output
    assert _rows(out)["case_3"]["status"] == "ok" and not (out / ".case_3.failed.json").exists()


def test_a_failed_row_is_no_output_in_a_cohort(synthetic_cohort, standin_model, tmp_path):
    slides, out = tmp_path / "slides", tmp_path / "out"
    slides.mkdir()
    (slides / "bad.svs").write_text("not a slide")
    (slides / "good.svs").symlink_to(synthetic_cohort.slides[2].path)
    first = _run(slides, "--model", standin_model, "--out", out)
    assert first.exit_code == 1 and first.output.count("not a slide OpenSlide can read") == 1
    again = _run(slides, "--model", standin_model, "--out", out)
    assert again.exit_code == 1 and "outputs of 1 of these slides (good)" in again.output
    assert "--resume to keep complete ones and score the rest (interrupted or failed)" in again.output
    resumed = _run(slides, "--model", standin_model, "--out", out, "--resume")
    assert resumed.exit_code == 1 and "complete outputs exist; skipped" in resumed.output
    assert resumed.output.count("not a slide OpenSlide can read") == 1  # retried, said once
    assert not any(p.name.endswith(".partial") for p in out.iterdir())


# -- 26.4: hangs ---------------------------------------------------------------------------------------
def test_a_fifo_given_as_a_slide_is_refused_at_once(standin_model, tmp_path):
    fifo = tmp_path / "stream.svs"
    os.mkfifo(fifo)
    done = subprocess.run([sys.executable, "-c", RUN, str(fifo), "--model", str(standin_model), "--out",
                           str(tmp_path / "out"), "--quiet"], env=_env(), capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and "not a regular file (a FIFO, socket or device)" in done.stderr
    assert not (tmp_path / "out").exists()


def test_thread_counts_beyond_the_machine_are_bounded(synthetic_cohort, standin_model, tmp_path):
    out = tmp_path / "out"
    done = subprocess.run([sys.executable, "-c", RUN, str(synthetic_cohort.slides[2].path), "--model",
                           str(standin_model), "--out", str(out), "--quiet", "--threads", "5000", "--workers", "10000"],
                          env=_env(), capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr
    cpus = usable_cpus()
    assert f"note: --threads 5000 is more than the {cpus} CPUs this process may use; using {cpus}" in done.stderr
    assert f"note: --workers 10000 is more than the {cpus} CPUs" in done.stderr
    summary = json.loads((out / synthetic_cohort.slides[2].path.stem / "summary.json").read_text())
    assert summary["settings"]["workers"] == cpus and summary["workers"] <= cpus


def test_patches_bench_and_eval_bound_their_threads_too(synthetic_cohort, synthetic_tif, standin_model, tmp_path):
    from fwrd.cli.bench import command as bench
    from fwrd.cli.evaluate import command as evaluate
    from fwrd.cli.patches import command as patches

    cpus = usable_cpus()
    made = CliRunner().invoke(patches, [str(synthetic_cohort.slides[0].path), "--out", str(tmp_path / "p"),
                                        "--annotations", str(synthetic_cohort.annotations_dir), "--normal", "2",
                                        "--tumor", "2", "--tile", "64", "--workers", "10000", "--no-progress"])
    assert made.exit_code == 0, made.output
    assert f"note: --workers 10000 is more than the {cpus} CPUs" in made.output
    scored = CliRunner().invoke(evaluate, ["patches", str(tmp_path / "p"), "--model", str(standin_model),
                                           "--threads", "5000", "--out", str(tmp_path / "e")])
    assert scored.exit_code == 0, scored.output
    assert f"note: --threads 5000 is more than the {cpus} CPUs" in scored.output
    measured = CliRunner().invoke(bench, ["--model", str(standin_model), "--slide", str(synthetic_tif.path),
                                          "--stages", "decode", "--workers", f"1,{cpus + 1000}", "--threads", "5000",
                                          "--repeats", "1", "--seconds", "0.05", "--quiet",
                                          "--json", str(tmp_path / "b.json")])
    assert measured.exit_code == 0, measured.output
    assert f"note: --workers {cpus + 1000} is more than" in measured.output
    assert f"note: --threads 5000 is more than the {cpus} CPUs" in measured.output


# -- 26.6: formulas in slides.csv, control characters in messages --------------------------------------
def test_slides_csv_neutralises_formulas_and_fwrd_eval_reads_them_back(synthetic_cohort, standin_model, tmp_path):
    from fwrd.cli.evaluate import command as evaluate
    from fwrd.runtime.outputs.slides_table import check_slides_table

    slides, out = tmp_path / "slides", tmp_path / "out"
    slides.mkdir()
    named = {"=1+2": synthetic_cohort.slides[0], "-x": synthetic_cohort.slides[1],
             "@sum": synthetic_cohort.slides[2], "'+cmd": synthetic_cohort.slides[2]}
    for name, source in named.items():
        os.link(source.path, slides / f"{name}.svs")  # hard links: four files, four slides
    result = _run(slides, "--model", standin_model, "--out", out)
    assert result.exit_code == 0, result.output
    lines = (out / "slides.csv").read_text(encoding="utf-8").splitlines()[1:]
    assert sorted(line.split(",")[0] for line in lines) == ["''+cmd", "'-x", "'=1+2", "'@sum"]
    assert sorted(check_slides_table(out)) == sorted(named)  # fwrd-eval RUN_DIR's check reads them back
    reference = tmp_path / "reference.csv"
    reference.write_text("".join(f"{n},{'Tumor' if s.tumor else 'Normal'}\n" for n, s in named.items()))
    report = CliRunner().invoke(evaluate, ["slides", "--scores", str(out / "slides.csv"), "--reference",
                                           str(reference), "--out", str(tmp_path / "eval")])
    assert report.exit_code == 0, report.output
    per_slide = json.loads((tmp_path / "eval" / "slides.json").read_text())["per_slide"]
    assert sorted(s["slide"] for s in per_slide) == sorted(named)


def test_error_cells_are_neutralised_and_read_back(tmp_path):
    from fwrd.runtime.outputs.slides_table import TableRow, read_table, render

    path = tmp_path / "slides.csv"
    path.write_text(render([TableRow("=cmd|' /C calc'!A0", None, "failed", "@SUM(1+1)*cmd|' /C calc'!A0"),
                            TableRow("plain", 0.5, "ok")]))
    assert all(cell[0] not in "=+-@" for row in csv.reader(path.open()) for cell in row if cell)
    table = read_table(path)
    assert table["=cmd|' /C calc'!A0"]["error"] == "@SUM(1+1)*cmd|' /C calc'!A0"
    assert table["plain"]["score"] == "0.5"


def test_control_characters_in_paths_are_escaped_in_messages(standin_model, tmp_path):
    folder = tmp_path / "evil\x1b]0;owned\x07\x1b[2J"
    folder.mkdir()
    bad = folder / "case.svs"
    bad.write_text("not a slide")
    result = CliRunner().invoke(command, [str(bad), "--model", str(standin_model), "--out", str(tmp_path / "out"),
                                          "--threads", "1"])
    assert result.exit_code == 1 and "not a slide OpenSlide can read" in result.output
    assert "\x1b" not in result.output and "\x07" not in result.output
    assert "evil\\x1b]0;owned\\x07\\x1b[2J" in result.output


def test_for_terminal_and_csv_cells():
    from fwrd.safe_text import csv_cell, for_terminal, from_csv_cell

    assert for_terminal("a\x1b[31mb\u202e\x9b\udcff\n") == "a\\x1b[31mb\\u202e\\x9b\\xff\\x0a"
    assert for_terminal("tumor_001 µm ✓") == "tumor_001 µm ✓"
    for text in ["=1", "+1", "-1", "@a", "\tx", "\rx", "'x", "''", "plain", "", "a=b"]:
        assert from_csv_cell(csv_cell(text)) == text
        assert not csv_cell(text).startswith(("=", "+", "-", "@", "\t", "\r"))
