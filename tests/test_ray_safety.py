"""`fwrd-run --ray` in shared places (issue 26.6, 21.9): Ray's temp folders private, `--ray auto` names the
cluster it joins and where the address came from, and a clean exit leaves no Ray process or folder behind.
Slow (Ray starts twice): run by name."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path

import pytest

from fwrd.runtime.cluster import (RAY_SOCKET_TAIL, SOCKET_PATH_MAX, joined_address, ray_temp_parent,
                                  start_local_ray, stop_local_ray)

RUN = "from fwrd.cli.run import main; main()"


def _env(**extra: str) -> dict[str, str]:
    root = str(Path(__file__).resolve().parent.parent)
    return {**os.environ, "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")]), **extra}


def _fake_ray(gcs: str) -> types.SimpleNamespace:
    return types.SimpleNamespace(get_runtime_context=lambda: types.SimpleNamespace(gcs_address=gcs))


def test_a_long_temp_folder_moves_the_ray_folder_where_its_sockets_fit(monkeypatch, tmp_path):
    """Ray refuses to start when a socket's path passes 107 bytes (AF_UNIX): under a long TMPDIR the private
    Ray folder goes to /tmp instead, and under a short one it stays in TMPDIR."""
    long = tmp_path / ("x" * (SOCKET_PATH_MAX - RAY_SOCKET_TAIL))
    monkeypatch.setattr(tempfile, "tempdir", str(long))
    assert ray_temp_parent() == "/tmp" and len(str(long)) + RAY_SOCKET_TAIL > SOCKET_PATH_MAX
    monkeypatch.setattr(tempfile, "tempdir", "/tmp/x")
    assert ray_temp_parent() == "/tmp/x"


def test_ray_auto_names_the_address_and_where_it_came_from(monkeypatch):
    monkeypatch.setenv("RAY_ADDRESS", "10.1.2.3:6379")
    assert joined_address(_fake_ray("10.1.2.3:6379"), "auto") == (
        "fwrd-run: joined the Ray cluster at 10.1.2.3:6379 (--ray auto: from RAY_ADDRESS=10.1.2.3:6379)")
    monkeypatch.delenv("RAY_ADDRESS")
    assert joined_address(_fake_ray("127.0.0.1:6379"), "auto").endswith("(--ray auto: the cluster started on this node)")
    assert joined_address(_fake_ray("h:6379"), "ray://h:10001") == "fwrd-run: joined the Ray cluster at h:6379"


@pytest.fixture(scope="module")
def ray_here():
    """A local Ray instance started the way `fwrd-run --ray` starts one."""
    ray = pytest.importorskip("ray", reason="the --ray tests need Ray: pip install fwrd[cluster]")
    import signal

    sigterm = signal.getsignal(signal.SIGTERM)  # ray.init replaces it; later modules expect pytest's own
    private = start_local_ray(num_cpus=2)
    try:
        yield ray, private
    finally:
        stop_local_ray(private)
        signal.signal(signal.SIGTERM, sigterm)
    assert not private.exists()


def test_the_ray_fwrd_starts_keeps_its_session_folders_private(ray_here):
    ray, private = ray_here
    session = Path(ray._private.worker.global_worker.node.get_session_dir_path())
    assert session.is_relative_to(private)  # not /tmp/ray, where Ray makes every folder world-writable
    mode = private.stat()
    assert stat.S_IMODE(mode.st_mode) == 0o700 and mode.st_uid == os.getuid()


def test_ray_auto_joins_the_cluster_ray_address_names_and_says_so(ray_here, synthetic_cohort, standin_model,
                                                                   tmp_path):
    ray, _ = ray_here
    address = ray.get_runtime_context().gcs_address
    slide, out = synthetic_cohort.slides[2].path, tmp_path / "out"
    done = subprocess.run([sys.executable, "-c", RUN, str(slide), "--model", str(standin_model), "--out", str(out),
                           "--quiet", "--threads", "1", "--ray", "auto"],
                          env=_env(RAY_ADDRESS=address), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert f"fwrd-run: joined the Ray cluster at {address} (--ray auto: from RAY_ADDRESS={address})" in done.stderr
    assert (out / slide.stem / "summary.json").is_file()
    assert not list(out.glob(".fwrd-ray-*"))


def _holding(folder: Path) -> list[str]:
    """'pid cmdline' of every process with a file, its working folder or its executable under `folder`."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            links = [proc / "cwd", *(proc / "fd").iterdir()]
            if any(Path(os.readlink(link)).is_relative_to(folder) for link in links):
                found.append(f"{proc.name} {(proc / 'cmdline').read_bytes()[:80]!r}")
        except OSError:
            continue
    return found


def test_a_clean_ray_run_leaves_no_ray_process_and_no_temp_folder(synthetic_cohort, standin_model, tmp_path):
    pytest.importorskip("ray", reason="the --ray tests need Ray: pip install fwrd[cluster]")
    temp = Path(tempfile.mkdtemp(prefix="fr", dir="/tmp"))  # short: Ray's socket paths must fit 107 bytes
    try:
        slide, out = synthetic_cohort.slides[2].path, tmp_path / "out"
        done = subprocess.run([sys.executable, "-c", RUN, str(slide), "--model", str(standin_model), "--out", str(out),
                               "--quiet", "--threads", "1", "--ray"],
                              env=_env(TMPDIR=str(temp)), capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        assert (out / slide.stem / "summary.json").is_file()
        deadline = time.monotonic() + 15  # processes that are exiting, not orphans: give them a moment
        while _holding(temp) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert _holding(temp) == []  # no raylet, GCS, dashboard or runtime-env agent lives on
        assert [p.name for p in temp.iterdir() if p.is_dir()] == []  # the private folder (sessions, sockets, logs)
    finally:
        import shutil

        shutil.rmtree(temp, ignore_errors=True)
