"""`fwrd-run --ray`: score a cohort on a Ray cluster, one long-lived actor per GPU (or per N CPU cores).

Ray (`pip install fwrd[cluster]`) is imported only here and only when asked for. The driver:

    check OUT is the same folder on every node (a marker file each actor must see) -> one actor per GPU
    (num_gpus=1) or per CPU node (or per --threads cores), each opening the backend once -> slides
    dispatched one at a time to whichever actor is free, largest file first -> OUT/slides.csv, once
    (outputs/slides_table.update_slides_table: rebuilt from OUT's slide folders under a lock)

Each actor calls `cohort.score_or_fail`, i.e. the same `score_slide` a local run calls, so outputs are
the local run's, file for file; the driver never writes slide outputs. Faults:

- a slide that fails for its own reasons (corrupt, no tissue: FwrdError or any exception inside
  `score_slide`) comes back as a `failed` result, is reported once and is never retried;
- an actor that dies (process killed, node lost, out of memory) is restarted by Ray (`max_restarts`)
  and its slide is queued again, at most MAX_ATTEMPTS times in all, with `resume=True` so the retry
  continues from the slide's journal instead of starting over;
- Ctrl-C (or SIGTERM) kills the actors, rebuilds slides.csv and says to rerun with `--resume`, which
  skips complete slides and continues interrupted ones from their journals.

OUT, the model and the slides must be at the same path on every node (a shared file system).

The driver's marker `OUT/.fwrd-ray-<id>` is held locked while the driver runs (outputs/locks.py), so the
next run into OUT deletes the marker of a driver that was killed. `--ray` starts Ray with its temp folder
(sessions, sockets, logs; Ray makes them world-writable) inside a private folder of the system temp
folder (mode 0700), removed at the end; `--ray auto` names the cluster it joined and where the address
came from (RAY_ADDRESS, or the cluster started on this node).

    results = score_cohort_on_ray(slides, BackendSpec(Path("rd.onnx"), {"batch_size": 32}), Path("out"),
                                  RunSettings(), address="auto")
"""

from __future__ import annotations

import atexit
import logging
import os
import re
import shutil
import signal
import sys
import tempfile
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from tqdm import tqdm

from fwrd.errors import DependencyMissing, FwrdError, InputNotFound
from fwrd.runtime.cohort import _cohort_line, cohort_line, prepare_output, score_or_fail
from fwrd.runtime.outputs.locks import RAY_MARKER_PREFIX, held_marker, remove_abandoned
from fwrd.runtime.outputs.slides_table import TABLE, table_rows, update_slides_table
from fwrd.runtime.settings import RunSettings
from fwrd.runtime.slide_job import SlideResult, dense_threshold_note
from fwrd.safe_text import for_terminal
from fwrd.slide.discover import slide_name

MAX_ATTEMPTS = 3  # tries per slide when the actor scoring it dies (a slide that kills every actor fails)
ACTOR_RESTARTS = 3  # times Ray restarts one actor before giving it up
LOCAL = "local"  # --ray without ADDRESS: start a Ray instance on this machine
_ADDRESS = re.compile(r"^(auto|local|ray://\S+|[A-Za-z0-9_.\-\[\]:]+:\d+)$")
_POLL_S = 0.5  # longest wait between progress refreshes (and Ctrl-C checks)
STOP_WAIT_S = 5.0  # on Ctrl-C/SIGTERM, how long to wait for killed actors to be gone (Slurm's KillWait: 30 s)


def import_ray() -> Any:
    """The `ray` module, or DependencyMissing with the one line that says how to get it."""
    try:
        import ray
    except ImportError:
        raise DependencyMissing("--ray needs Ray, which is not installed: pip install fwrd[cluster]") from None
    return ray


def check_address(address: str) -> str:
    """`local` (start Ray here), `auto` (the cluster this node joined), `ray://host:port` or `host:port`."""
    if not _ADDRESS.match(address):
        raise FwrdError(
            f"--ray {address!r} is not a Ray address (auto, ray://HOST:10001 or HOST:6379); "
            "write --ray=ADDRESS, or put a bare --ray after the slides"
        )
    return address


@dataclass(frozen=True)
class BackendSpec:
    """How every actor opens its backend: `open_backend(model, **options)`, as `fwrd-run` does locally."""

    model: Path
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def wants_gpu(self) -> bool:
        """False only when told to run on the CPU (`--backend torch --device cpu`)."""
        return self.options.get("device", "auto") != "cpu"


def plan_actors(nodes: list[dict[str, Any]], threads: int | None, use_gpus: bool = True) -> list[dict[str, Any]]:
    """Ray options of each actor to start, from `ray.nodes()`.

    GPUs anywhere in the cluster (and `use_gpus`): one actor per GPU (`num_gpus=1`), CPU-only nodes
    unused (a CPU actor holding the cohort's last large slide would finish hours after the GPUs).
    Otherwise one actor per CPU node using all its cores, as a local run does; with `--threads N`,
    one actor per N cores of each node instead (N ONNX Runtime threads each; decode threads come on
    top, as locally). Each actor prefers its node (soft affinity), so the plan fills the cluster evenly.
    """
    alive = [n for n in nodes if n.get("Alive", n.get("alive", False))]
    gpu_nodes = [n for n in alive if n.get("Resources", {}).get("GPU", 0) >= 1]
    plans: list[dict[str, Any]] = []
    for node in alive:
        resources = node.get("Resources", {})
        cpus = int(resources.get("CPU", 0))
        if use_gpus and gpu_nodes:
            count, ask = int(resources.get("GPU", 0)), {"num_gpus": 1, "num_cpus": 1}
        elif threads:
            count, ask = cpus // threads, {"num_cpus": threads}
        else:
            count, ask = min(cpus, 1), {"num_cpus": cpus}
        plans += [{**ask, "node_id": node["NodeID"]}] * count
    if not plans:
        need = f"{threads} CPUs (--threads)" if threads else "a CPU or a GPU"
        raise FwrdError(f"no node of the Ray cluster has {need} free for an fwrd actor")
    return plans


class SlideWorker:
    """The body of one Ray actor: checks OUT, opens the backend once, then scores slide after slide.

    Never raises from its methods: an error opening the backend is kept and returned by `ready()`
    (every actor would fail the same way, so the driver stops with that one line), and a slide's
    error becomes its `failed` result.
    """

    def __init__(self, spec: BackendSpec, out: Path, marker: str) -> None:
        import ray  # inside the actor only

        from fwrd.runtime.backends import open_backend

        self.node = ray.util.get_node_ip_address()
        self.out = out
        self.backend: Any = None
        self.error = ""
        try:
            check_shared_output(out, marker)
            self.backend = open_backend(spec.model, **spec.options)
        except FwrdError as exc:
            self.error = f"node {self.node}: {' '.join(str(exc).split())}"
        except Exception as exc:  # noqa: BLE001 - reported by ready(), never a traceback
            self.error = f"node {self.node}: {exc.__class__.__name__}: {' '.join(str(exc).split())}"

    def ready(self) -> dict[str, Any]:
        if self.error:
            return {"error": self.error}
        b = self.backend
        return {"error": "", "node": self.node, "backend": b.name, "device": b.device, "precision": b.precision,
                "notes": list(getattr(b, "notes", [])),
                "dense_note": dense_threshold_note(b.config) if b.region is not None else ""}

    def score(self, slide: Path, settings: RunSettings) -> SlideResult:
        return score_or_fail(slide, self.backend, self.out, settings)


def check_shared_output(out: Path, marker: str) -> None:
    """OUT must be the very folder the driver writes: a node-local folder of the same name would scatter
    the outputs over the nodes while slides.csv, on the driver, called them complete."""
    try:
        seen = (out / marker).read_text(encoding="utf-8")
    except OSError:
        seen = ""
    if seen != marker:
        raise FwrdError(f"{out} is not the folder the driver writes (no {marker} there): OUT must be on a "
                        "shared file system every node mounts at the same path")
    prepare_output(out)  # and writable from this node


@dataclass
class _Task:
    path: Path
    index: int  # position in the cohort (slides.csv keeps the local run's order)
    attempt: int = 1
    deaths: list[str] = field(default_factory=list)


def dispatch_order(slides: list[Path]) -> list[int]:
    """Indices of `slides`, largest file first (ties by name), so the cluster finishes together."""
    def size(i: int) -> int:
        try:
            return slides[i].stat().st_size
        except OSError:
            return 0  # missing: fails fast wherever it runs
    return sorted(range(len(slides)), key=lambda i: (-size(i), slides[i].name))


def score_cohort_on_ray(
    slides: list[Path],
    spec: BackendSpec,
    out: Path,
    settings: RunSettings,
    address: str = LOCAL,
    log: Callable[[str], None] | None = None,
    say_failures: bool = True,
) -> list[SlideResult]:
    """Score `slides` on the Ray cluster at `address` (see the module docstring); results in `slides` order.

    Reuses a Ray connection the caller already made (ray.init); otherwise connects to (or starts, for
    `local`) one and disconnects at the end. Raises FwrdError when no actor can start; re-raises
    KeyboardInterrupt after recording what finished. `say_failures=False` leaves failed slides' lines
    out of `log` (a caller that reports the error itself, once).
    """
    ray = import_ray()
    check_address(address)
    out = Path(out).absolute()
    slides = [Path(p).absolute() for p in slides]
    spec = replace(spec, model=Path(spec.model).absolute())
    if not spec.model.is_file():
        raise InputNotFound(f"model not found: {spec.model}")
    created = not out.exists()
    prepare_output(out)
    remove_abandoned(out)  # the markers of killed drivers, the locks of killed runs
    log = log or (lambda line: tqdm.write(line, file=sys.stderr))
    marker = f"{RAY_MARKER_PREFIX}{uuid.uuid4().hex}"
    results: dict[int, SlideResult] = {}
    unrecorded: list[tuple[str, Path, str]] = []  # failures no actor recorded (it died scoring the slide)
    relay = _SigtermRelay()
    try:
        with held_marker(out / marker, marker), _connected(ray, address, relay):
            _Driver(ray, slides, spec, out, marker, settings, log, results, unrecorded, say_failures).run()
    except KeyboardInterrupt:
        relay.reraise()
        raise
    finally:
        # once, on the driver, whatever happened (Ctrl-C included): rebuilt from OUT's folders. Also when no
        # result reached the driver: a stop can kill an actor whose slide is complete on disk before its reply
        # arrives, and that slide still belongs in the table.
        if results or unrecorded or _has_rows(out):
            update_slides_table(out, unrecorded)
        elif created:  # nothing ran (no actor could open the model, say): leave no empty OUT behind
            with suppress(OSError):
                out.rmdir()
    return [results[i] for i in sorted(results)]


def start_local_ray(**options: Any) -> Path:
    """Start a Ray instance on this machine for fwrd (`--ray` without ADDRESS; tests; benchmarks); returns
    the private folder that holds its temp folder (removed at exit, or by `stop_local_ray`).

    Ray makes its temp folder and every session folder in it world-writable (mode 0777, for machines
    several people share), and by default that is /tmp/ray, where anyone could plant files or links in
    a session's folders. The instance fwrd starts keeps them inside a folder only this user can enter.
    Ray runs its workers at nice 15, which slows an actor against a local run wherever other work
    competes for the cores; the instance fwrd starts runs them at the driver's priority, as a local
    run does, unless RAY_worker_niceness says otherwise.
    """
    ray = import_ray()
    os.environ.setdefault("RAY_worker_niceness", "0")
    private = Path(tempfile.mkdtemp(prefix="fwrd-ray-", dir=ray_temp_parent()))  # mode 0700
    atexit.register(shutil.rmtree, private, True)  # registered before Ray's own exit hook: runs after it
    ray.init(address=LOCAL, include_dashboard=False, logging_level=logging.WARNING, _temp_dir=str(private / "ray"),
             **options)
    return private


# Ray's longest path below its temp folder, a Unix socket (the session name holds the time and the PID), and
# the kernel's limit on a socket's path (sun_path: 108 bytes with the terminating NUL; Ray checks 107).
RAY_SOCKET_TAIL = len("/fwrd-ray-xxxxxxxx/ray/session_2026-12-07_19-12-37_585520_4194304/sockets/plasma_store")
SOCKET_PATH_MAX = 107


def ray_temp_parent() -> str:
    """Where fwrd's private Ray folder goes: the temp folder (TMPDIR), unless Ray's sockets would not fit
    below it, as under a long TMPDIR, where Ray would refuse to start; then /tmp, Ray's own default."""
    base = tempfile.gettempdir()
    if len(os.fsencode(base)) + RAY_SOCKET_TAIL <= SOCKET_PATH_MAX:
        return base
    return "/tmp"


def stop_local_ray(private: Path) -> None:
    """Stop the Ray instance `start_local_ray` started and remove its private temp folder."""
    import_ray().shutdown()
    shutil.rmtree(private, ignore_errors=True)


def joined_address(ray: Any, address: str) -> str:
    """The line that says which cluster `--ray ADDRESS` joined (and, for `auto`, where that came from)."""
    try:
        gcs = ray.get_runtime_context().gcs_address
    except Exception:  # noqa: BLE001 - an older Ray: the address as given is all there is
        gcs = address
    source = ""
    if address == "auto":
        env = os.environ.get("RAY_ADDRESS")
        source = f" (--ray auto: from RAY_ADDRESS={env})" if env else " (--ray auto: the cluster started on this node)"
    return for_terminal(f"fwrd-run: joined the Ray cluster at {gcs}{source}")


def _has_rows(out: Path) -> bool:
    """Whether OUT holds a finished or failed slide (what slides.csv lists)."""
    try:
        return bool(table_rows(out))
    except OSError:
        return False


class _SigtermRelay:
    """ray.init replaces the SIGTERM handler (with sys.exit(15); its C++ core also prints a stack dump)
    and Ray turns whatever a handler raises during ray.wait into a plain KeyboardInterrupt. This puts the
    caller's handler back after ray.init and remembers the signal, so `reraise` can stop the run the way
    the caller's handler does (fwrd-run: "terminated", exit 143) once the actors are stopped."""

    def __init__(self) -> None:
        self.previous: Any = None
        self.received = False

    @contextmanager
    def around_init(self) -> Iterator[None]:
        main = threading.current_thread() is threading.main_thread()
        previous = signal.getsignal(signal.SIGTERM) if main else None
        try:
            yield
        finally:
            if callable(previous):
                self.previous = previous
                signal.signal(signal.SIGTERM, self._handle)
            elif previous is not None:
                signal.signal(signal.SIGTERM, previous)

    def _handle(self, signum: int, frame: Any) -> None:
        self.received = True
        self.previous(signum, frame)

    def reraise(self) -> None:
        """Within `except KeyboardInterrupt`: raise what the caller's SIGTERM handler raises, if it was SIGTERM."""
        if self.received:
            self.previous(signal.SIGTERM, None)

    def restore(self) -> None:
        if self.previous is not None and signal.getsignal(signal.SIGTERM) == self._handle:
            signal.signal(signal.SIGTERM, self.previous)


@contextmanager
def _connected(ray: Any, address: str, relay: _SigtermRelay) -> Iterator[None]:
    if ray.is_initialized():
        yield
        return
    private: Path | None = None
    try:
        with relay.around_init():
            if address == LOCAL:
                private = start_local_ray()
            else:
                ray.init(address=address, logging_level=logging.WARNING)
    except Exception as exc:  # noqa: BLE001 - ConnectionError, RuntimeError, ...: one line
        where = "start Ray on this machine" if address == LOCAL else f"connect to the Ray cluster at {address}"
        raise FwrdError(f"cannot {where}: {' '.join(str(exc).split())}") from None
    if private is None:  # always said, --quiet or not: which cluster will read the slides and the model
        tqdm.write(joined_address(ray, address), file=sys.stderr)
    try:
        yield
    finally:
        if private is None:
            ray.shutdown()
        else:
            stop_local_ray(private)
        relay.restore()


class _Driver:
    """The dispatch loop: at most one slide in flight per actor, the largest waiting slide to the
    first free actor; dead actors' slides go back to the front of the queue."""

    def __init__(self, ray: Any, slides: list[Path], spec: BackendSpec, out: Path, marker: str,
                 settings: RunSettings, log: Callable[[str], None], results: dict[int, SlideResult],
                 unrecorded: list[tuple[str, Path, str]], say_failures: bool) -> None:
        self.ray, self.slides, self.spec, self.out, self.marker = ray, slides, spec, out, marker
        self.progress = settings.progress
        self.settings = replace(settings, progress=False)  # one bar, the driver's
        self.log, self.results, self.unrecorded, self.say_failures = log, results, unrecorded, say_failures
        self.queue: deque[_Task] = deque(_Task(slides[i], i) for i in dispatch_order(slides))
        self.pending: dict[Any, tuple[int, _Task | None]] = {}  # ref -> (actor, task or None for ready())
        self.actors: dict[int, Any] = {}
        self.idle: list[int] = []
        self.tiles = 0
        self.began: float | None = None

    def run(self) -> None:
        ray = self.ray
        plans = plan_actors(ray.nodes(), self.spec.options.get("threads"), self.spec.wants_gpu)
        worker = ray.remote(SlideWorker)
        strategy = ray.util.scheduling_strategies.NodeAffinitySchedulingStrategy

        def start_actor(number: int) -> None:
            plan = plans[number]
            ask = {k: v for k, v in plan.items() if k != "node_id"}
            self.actors[number] = worker.options(
                **ask, max_restarts=ACTOR_RESTARTS, max_task_retries=0,
                scheduling_strategy=strategy(plan["node_id"], soft=True),
            ).remote(self.spec, self.out, self.marker)
            self._ask_ready(number)

        self._start_actor = start_actor
        for number in range(len(plans)):
            start_actor(number)
        bar = tqdm(total=len(self.slides), unit="slide", desc="cohort", file=sys.stderr, dynamic_ncols=True,
                   disable=not self.progress, mininterval=0.5)
        try:
            while self.queue or any(task is not None for _, task in self.pending.values()):
                self._dispatch()
                if not self.pending:
                    raise FwrdError(f"every Ray actor died; {len(self.queue)} slide(s) not scored "
                                    f"(rerun with --resume)")
                done, _ = ray.wait(list(self.pending), num_returns=1, timeout=_POLL_S)
                for ref in done:
                    number, task = self.pending.pop(ref)
                    if task is None:
                        self._on_ready(ref, number, len(plans))
                    else:
                        self._on_slide(ref, number, task, bar)
                if self.began is not None:  # tiles/s of the slides finished, since the first actor was ready
                    bar.set_postfix_str(f"{self.tiles / (time.perf_counter() - self.began):.0f} tiles/s",
                                        refresh=False)
                bar.refresh()
        except KeyboardInterrupt:
            bar.close()
            self._stop(collect=True)
            self.log(f"stopped: {len(self.results)} of {len(self.slides)} slides done, the actors killed; "
                     "interrupted slides continue from their journals with --resume")
            raise
        finally:
            bar.close()
            self._stop(collect=False)
        self.log(cohort_line(list(self.results.values()), self.out / TABLE))

    def _stop(self, collect: bool) -> None:
        """Kill the actors; with `collect`, wait (briefly) until they are gone and record the slides they
        finished meanwhile, so that no slide completes after slides.csv is written."""
        for actor in self.actors.values():
            self.ray.kill(actor, no_restart=True)
        scoring = {ref: task for ref, (_, task) in self.pending.items() if task is not None}
        self.actors, self.pending = {}, {}
        if not (collect and scoring):
            return
        done, _ = self.ray.wait(list(scoring), num_returns=len(scoring), timeout=STOP_WAIT_S)
        for ref in done:
            try:
                result = self.ray.get(ref)
            except self.ray.exceptions.RayError:
                continue  # killed mid-slide: its journal stays for --resume
            self._record(scoring[ref], result, None)

    def _ask_ready(self, number: int) -> None:
        # max_task_retries=-1: wait for an actor Ray is restarting instead of failing at once
        ref = self.actors[number].ready.options(max_task_retries=-1).remote()
        self.pending[ref] = (number, None)

    def _dispatch(self) -> None:
        while self.queue and self.idle:
            number, task = self.idle.pop(0), self.queue.popleft()
            settings = self.settings if task.attempt == 1 else replace(self.settings, resume=True)
            self.pending[self.actors[number].score.remote(task.path, settings)] = (number, task)

    def _on_ready(self, ref: Any, number: int, total: int) -> None:
        try:
            info = self.ray.get(ref)
        except self.ray.exceptions.RayError as exc:  # restarts used up, or unschedulable
            self.log(f"Ray actor {number} is gone ({_first_line(exc)})")
            self.actors.pop(number, None)
            return
        if info["error"]:
            raise FwrdError(info["error"])
        self.idle.append(number)
        if self.began is None:
            self.began = time.perf_counter()
            self.log(f"fwrd-run: {len(self.slides)} slide(s) on Ray, {total} actor(s) of {info['backend']} "
                     f"({info['device']}, {info['precision']})")
            for note in info["notes"]:  # the backend's warnings, as a local run prints them
                self.log(f"note: node {info['node']}: {note}")
            if info["dense_note"] and self.settings.threshold is None:  # as a local run says it
                self.log(f"note: {info['dense_note']}")

    def _on_slide(self, ref: Any, number: int, task: _Task, bar: tqdm) -> None:
        ray = self.ray
        try:
            result = ray.get(ref)
        except (ray.exceptions.RayActorError, ray.exceptions.WorkerCrashedError,
                ray.exceptions.OutOfMemoryError) as exc:
            task.deaths.append(_first_line(exc))
            if isinstance(exc, getattr(ray.exceptions, "ActorUnavailableError", ())):
                # unreachable, perhaps still scoring: end this actor for good before another takes the slide,
                # and start a new one. (A kill that lets Ray restart it could land on the next incarnation,
                # already scoring another slide, and count a death against that slide.)
                ray.kill(self.actors[number], no_restart=True)
                self._start_actor(number)
            else:
                self._ask_ready(number)  # Ray restarts it; it is free again once ready
            if task.attempt < MAX_ATTEMPTS:
                self.log(f"{slide_name(task.path)}: its Ray actor died ({task.deaths[-1]}); retrying from its journal "
                         f"(attempt {task.attempt + 1} of {MAX_ATTEMPTS})")
                self.queue.appendleft(replace(task, attempt=task.attempt + 1))
            else:
                result = SlideResult(slide_name(task.path), task.path, "failed", None,
                                     f"the Ray actor scoring it died {MAX_ATTEMPTS} times (last: {task.deaths[-1]})")
                self.unrecorded.append((result.name, result.path, result.error))
                self._record(task, result, bar)
            return
        except ray.exceptions.RayError as exc:  # not the slide's own error (those come back as results)
            result = SlideResult(slide_name(task.path), task.path, "failed", None, _first_line(exc))
            self.unrecorded.append((result.name, result.path, result.error))
        self.idle.append(number)
        self._record(task, result, bar)

    def _record(self, task: _Task, result: SlideResult, bar: tqdm | None) -> None:
        self.results[task.index] = result
        self.tiles += int(result.summary.get("tiles_this_run") or 0) if result.status in ("ok", "review") else 0
        if bar is not None:
            bar.update(1)
        if result.status != "failed" or self.say_failures:
            self.log(_cohort_line(len(self.results), len(self.slides), result))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return " ".join(text[0].split()) if text else exc.__class__.__name__
