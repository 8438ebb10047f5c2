"""What the ``spinlock`` CLI prints: Spinlock's own lines and progress bars; Ray's chatter stays in Ray's logs.

The CLI calls :func:`configure` once. Without it (library use) Spinlock changes nothing about Ray's output.

Ray 2.60 writes to a terminal from three places, and each is quieted where it starts, never dropped from
Ray's log files (``/tmp/ray/session_*/logs``):

- the driver's Python loggers (``ray``, ``ray.data``): their console output is raised to ERROR; Ray
  Data keeps its full ``ray-data.log`` file handler (``RAY_DATA_LOGGING_CONFIG``, read by the driver and
  by the workers of an embedded Ray that inherit the environment);
- worker processes, whose stdout/stderr Ray copies to ``worker-*.out/.err`` and streams to the driver
  (``log_to_driver``): the stream keeps autoscaler events and Spinlock's own worker lines (the
  tokenizer's epoch lines) and leaves the rest in the files;
- the driver's C++ core worker, which writes ERROR lines (e.g. ``core_worker.cc: ... constructor
  arguments in the object store and max_restarts > 0``, harmless for Ray Data's and Ray Train's own
  actors) both to ``python-core-driver-*.log`` and to file descriptor 2; the console copy is dropped.
  ``RAY_BACKEND_LOG_LEVEL`` cannot do this: it sets one threshold for the file and the terminal.

``-v`` shows everything Ray prints, as Ray prints it.

Whatever the verbosity, the tokenize stage turns off Ray Data's progress output (:func:`quiet_ray_data`)
and Ray Train's per-report lines in its workers (:func:`quiet_train_worker`): they would bury the
stage's own one-line-per-epoch log.
"""

from __future__ import annotations

import functools
import importlib
import logging
import os
import re
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

log = logging.getLogger("spinlock")

QUIET, NORMAL, VERBOSE = -1, 0, 1
_verbosity: int | None = None  # None: not configured (library use), Ray's output untouched

# lines Spinlock's own code writes in Ray worker processes (spinlock.encoding.training.epoch_line)
WORKER_LINE = re.compile(r"^epoch \d+/\d+: ")
# glog-style line of Ray's C++ core: "[2026-12-06 04:13:06,393 E 8955 8955] core_worker.cc:2465: ..."
NATIVE_RAY_LINE = re.compile(rb"^\[\d{4}-\d\d-\d\d [\d:,.]+ [DIWEF] \d+ \d+\] [\w./-]+\.(cc|h):\d+: ")
RAY_DATA_LOGGING = Path(__file__).with_name("ray_data_logging.yaml")


class _Formatter(logging.Formatter):
    """INFO as plain lines; warnings and errors say so, in Spinlock's words."""

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        return text if record.levelno < logging.WARNING else f"{record.levelname.lower()}: {text}"


class _StderrHandler(logging.StreamHandler):
    """Writes to ``sys.stderr`` as it is at each record, not as it was at setup: a caller (a notebook,
    a test runner's capture) may replace it after the CLI configured logging."""

    @property  # type: ignore[override]
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def configure(verbosity: int = NORMAL, *, native_stderr: bool = False) -> None:
    """Set up the CLI's terminal output once per command (idempotent).

    ``verbosity``: QUIET shows warnings and errors only, NORMAL adds Spinlock's INFO lines and progress
    bars, VERBOSE adds Spinlock's DEBUG lines and everything Ray prints. ``native_stderr`` also filters
    Ray's C++ lines out of file descriptor 2; only the console script sets it (it redirects the process's
    stderr, which a test runner capturing that descriptor must keep).
    """
    global _verbosity
    _verbosity = verbosity
    if verbosity < VERBOSE:
        os.environ.setdefault("RAY_DATA_LOGGING_CONFIG", str(RAY_DATA_LOGGING))
        if native_stderr:
            _filter_native_stderr()  # first: the handler below writes to the new sys.stderr
    for h in [h for h in log.handlers if getattr(h, "_spinlock", False)]:
        log.removeHandler(h)
    handler = _StderrHandler()
    handler.setFormatter(_Formatter("%(message)s"))
    handler._spinlock = True  # type: ignore[attr-defined]
    log.addHandler(handler)
    log.setLevel({QUIET: logging.WARNING, NORMAL: logging.INFO}.get(verbosity, logging.DEBUG))
    log.propagate = False


def quiet() -> bool:
    """Whether the CLI runs with ``-q`` (no INFO lines, no progress bars)."""
    return _verbosity == QUIET


@contextmanager
def ray_output() -> Iterator[dict]:
    """Wrap ``ray.init(**options)``: Ray's driver loggers quiet during it, the worker stream filtered after.

    Yields the ``ray.init`` keyword arguments to use. Also says in Spinlock's words what Ray's token-auth
    warning means when Ray creates the token.
    """
    if _verbosity is None or _verbosity >= VERBOSE:
        yield {}
        return
    # the "ray" logger of the driver (ray.init sets its level); ray.data: RAY_DATA_LOGGING_CONFIG, keeps its file
    for name in ("ray.train", "ray.tune"):
        logging.getLogger(name).setLevel(logging.ERROR)
    token = Path(os.environ.get("RAY_AUTH_TOKEN_PATH") or Path.home() / ".ray" / "auth_token")
    had_token = token.exists()
    yield {"logging_level": logging.ERROR}
    _filter_worker_stream()
    if not had_token and token.exists():
        log.info("Ray created an authentication token in %s; a Ray head started on this machine now"
                 " requires it: start it and submit jobs with RAY_AUTH_MODE=token (README, 'On a Ray cluster')",
                 token)


def _filter_worker_stream() -> None:
    """Keep autoscaler events and Spinlock's worker lines in what Ray streams from workers to the driver.

    Ray streams through a private dispatcher; if it moves, the output stays Ray's default (all lines).
    """
    try:
        # deferred like quiet_ray_data's import, and guarded: a private module
        from ray._private.ray_logging import global_worker_stdstream_dispatcher as dispatcher
    except ImportError:
        return
    with dispatcher._lock:
        handlers = dispatcher.handlers
        for i, (name, handler) in enumerate(handlers):
            if name == "ray_print_logs" and not getattr(handler, "_spinlock", False):
                handlers[i] = (name, _stream_filter(handler))


def _stream_filter(handler: Callable[[dict], None]) -> Callable[[dict], None]:
    # Spinlock's lines speak for themselves: without Ray's "(RayTrainWorker pid=...)" prefix
    plain = handler
    if isinstance(handler, functools.partial) and "ignore_prefix" in handler.keywords:
        plain = functools.partial(handler.func, *handler.args, **{**handler.keywords, "ignore_prefix": True})

    def emit(data: dict) -> None:
        if data.get("pid") == "autoscaler":
            handler(data)
            return
        lines = [line for line in data.get("lines", []) if WORKER_LINE.match(line)]
        if lines:
            plain({**data, "lines": lines})

    emit._spinlock = True  # type: ignore[attr-defined]
    return emit


_native_filter_installed = False


def _filter_native_stderr() -> None:
    """Route file descriptor 2 through a thread that drops Ray's C++ log lines (they are in Ray's files).

    Python's own ``sys.stderr`` (logging, tqdm) keeps writing to the original descriptor directly, so
    progress bars are not delayed; only native writers (Ray's C++ core, other C libraries) pass the pipe.
    """
    global _native_filter_installed
    if _native_filter_installed:
        return
    try:
        original = os.dup(2)
        read_end, write_end = os.pipe()
    except OSError:
        return
    sys.stderr.flush()
    sys.stderr = os.fdopen(os.dup(original), "w", buffering=1, encoding=sys.stderr.encoding,
                           errors=sys.stderr.errors)
    os.dup2(write_end, 2)
    os.close(write_end)
    _native_filter_installed = True

    def pump() -> None:
        pending = b""
        while chunk := os.read(read_end, 65536):
            *lines, pending = (pending + chunk).split(b"\n")
            out = b"".join(line + b"\n" for line in lines if not NATIVE_RAY_LINE.match(line))
            if out:
                os.write(original, out)
        if pending and not NATIVE_RAY_LINE.match(pending):
            os.write(original, pending)

    threading.Thread(target=pump, name="spinlock-native-stderr", daemon=True).start()


def quiet_train_worker() -> None:
    """Lower Ray Train's per-epoch INFO lines in this worker process to WARNING.

    Every ``ray.train.report`` logs the full repr of its metrics and every checkpoint its path: two
    long lines per epoch and worker that bury the stage's one-line epoch summary (``epoch_line``).
    The report logger is named after its file, so it is looked up on its (private) module; if Ray
    moves it, the lines simply come back.
    """
    logging.getLogger("ray.train.v2._internal.execution.storage").setLevel(logging.WARNING)
    try:
        importlib.import_module("ray.train.v2._internal.execution.context").logger.setLevel(logging.WARNING)
    except (ImportError, AttributeError):
        pass


def quiet_ray_data() -> None:
    """Turn off Ray Data's own progress output for the datasets created after this call.

    The stage makes several passes (cleaning statistics, k-means rows, every epoch's train and validation
    iterators, encoding); Ray Data reports each one with per-operator bars, or with INFO lines when stdout
    is not a terminal, burying the stage's own log (per-epoch losses, R², codebook health). The context
    travels with the datasets, so Ray Train workers' iterators stay quiet too.
    """
    import ray.data  # here, not at the top: every CLI command imports this module, few need Ray

    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
