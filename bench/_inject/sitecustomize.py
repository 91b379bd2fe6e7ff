"""Times every results-checkpoint flush inside searchd's worker, for bench.run.

bench.run puts this folder on PYTHONPATH when it starts ``searchd run``, with
$SEARCHD_BENCH_FLUSH_LOG naming a file. Python imports ``sitecustomize`` at start-up in
every process of the daemon's tree; only a process that imports ``searchd.checkpoint``
(the worker) gets its ``ResultsCheckpoint.flush`` and ``CheckpointStore.write`` wrapped.
Each call appends one JSON line: start (epoch s), seconds, bytes, kind (delta, base,
model, none), results then held in deltas and in the base. searchd's code is unchanged.

$SEARCHD_BENCH_PROTOTYPE (``bench.run --prototype NAME``) tries a proposed fix in the real
daemon; it is not what searchd does:

- ``warm-pool``: the worker starts joblib's pool in a thread as its very first step;
- ``inline-start``: ``searchd.execute.stream_local`` starts the pool in a thread and
  evaluates tasks in the worker process itself until the pool is up, then hands the rest
  to the pool (a small job may finish before the pool is needed);
- ``inline-adaptive``: the same, but the pool is started only once the worker has spent
  ``INLINE_SECONDS`` evaluating tasks itself: a job smaller than that never starts it.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import json
import os
import sys
import threading
import time
from typing import Any

_LOG = os.environ.get("SEARCHD_BENCH_FLUSH_LOG")
_PROTOTYPE = os.environ.get("SEARCHD_BENCH_PROTOTYPE", "")
_lock = threading.Lock()


def _write(rec: dict[str, Any]) -> None:
    assert _LOG is not None
    line = json.dumps(rec) + "\n"
    with _lock, open(_LOG, "a") as f:  # noqa: PTH123
        f.write(line)


def _patch(mod: Any) -> None:
    if mod.__name__ == "searchd.execute":
        if _PROTOTYPE == "inline-start":
            _inline_start(mod)
        elif _PROTOTYPE == "inline-adaptive":
            _inline_start(mod, INLINE_SECONDS)
        return
    if not _LOG:
        return
    if mod.__name__ == "searchd.checkpoint":
        real_flush = mod.ResultsCheckpoint.flush

        def flush(self: Any, snapshot: Any, compact: bool = False) -> int:
            gen, pending = self.gen, len(self.pending)
            t0, w0 = time.time(), time.perf_counter()
            n = real_flush(self, snapshot, compact)
            dt = time.perf_counter() - w0
            kind = "none" if n == 0 else ("base" if self.gen != gen or compact else "delta")
            _write({"at": t0, "seconds": dt, "bytes": n, "kind": kind, "results": pending,
                    "base_entries": self.base_entries, "delta_entries": self.delta_entries})
            return int(n)

        mod.ResultsCheckpoint.flush = flush
    elif mod.__name__ == "searchd.store":
        real_write = mod.CheckpointStore.write

        def write(self: Any, name: str, obj: Any) -> int:
            t0, w0 = time.time(), time.perf_counter()
            n = real_write(self, name, obj)
            if name.startswith("model-"):  # results bases are logged by flush()
                _write({"at": t0, "seconds": time.perf_counter() - w0, "bytes": n,
                        "kind": "model", "results": 0, "base_entries": 0, "delta_entries": 0})
            return int(n)

        mod.CheckpointStore.write = write


class _Loader(importlib.abc.Loader):
    def __init__(self, real: Any) -> None:
        self.real = real

    def create_module(self, spec: Any) -> Any:
        return self.real.create_module(spec)

    def exec_module(self, module: Any) -> None:
        self.real.exec_module(module)
        _patch(module)


def _start_pool(n_jobs: int, parent: int) -> None:
    """joblib's loky pool with stream_local's exact arguments, so that it is reused."""
    import importlib

    from joblib import Parallel, delayed

    from searchd import guard
    Parallel(n_jobs=n_jobs, initializer=guard.child_init, initargs=(parent,))(
        delayed(importlib.import_module)("sklearn.base") for _ in range(max(n_jobs, 1)))


INLINE_SECONDS = 1.0


def _inline_start(mod: Any, delay: float = 0.0) -> None:
    real = mod.stream_local
    ready = threading.Event()
    started: list[threading.Thread] = []
    inline = [0.0]  # seconds spent evaluating tasks in this process

    def stream_local(template: Any, tasks: Any, X: Any, y: Any, splits: Any, scoring: Any,
                     n_jobs: int) -> Any:
        tasks = iter(tasks)
        while not ready.is_set():
            if not started and inline[0] >= delay:
                def start() -> None:
                    _start_pool(n_jobs, os.getpid())
                    ready.set()
                started.append(threading.Thread(target=start, name="bench-pool", daemon=True))
                started[0].start()
            t = next(tasks, None)
            if t is None:
                return
            t0 = time.perf_counter()
            out = mod.evaluate(template, t.params, X, y, *splits[t.fold], scoring, t.i, t.fold)
            inline[0] += time.perf_counter() - t0
            yield out
        yield from real(template, tasks, X, y, splits, scoring, n_jobs)

    mod.stream_local = stream_local


class _Finder(importlib.abc.MetaPathFinder):
    names = ("searchd.checkpoint", "searchd.store", "searchd.execute")

    def find_spec(self, name: str, path: Any, target: Any = None) -> Any:
        if name not in self.names:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is not None and spec.loader is not None:
            spec.loader = _Loader(spec.loader)
        return spec


_argv = list(getattr(sys, "orig_argv", []))
if _LOG or _PROTOTYPE:
    sys.meta_path.insert(0, _Finder())
if _PROTOTYPE == "warm-pool" and "searchd.worker" in _argv:
    _n = int(_argv[_argv.index("--n-jobs") + 1]) if "--n-jobs" in _argv else -1
    threading.Thread(target=_start_pool, args=(_n, os.getpid()), name="bench-pool",
                     daemon=True).start()
