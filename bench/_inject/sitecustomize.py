"""Times every results-checkpoint flush inside searchd's worker, for bench.run.

bench.run puts this folder on PYTHONPATH when it starts ``searchd run``, with
$SEARCHD_BENCH_FLUSH_LOG naming a file. Python imports ``sitecustomize`` at start-up in
every process of the daemon's tree; only a process that imports ``searchd.state.checkpoint``
(the worker) gets its ``ResultsCheckpoint.flush`` and ``CheckpointStore.write`` wrapped.
Each call appends one JSON line: start (epoch s), seconds, bytes, kind (delta, base,
model, none), results then held in deltas and in the base. searchd's code is unchanged."""

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
_lock = threading.Lock()


def _write(rec: dict[str, Any]) -> None:
    assert _LOG is not None
    line = json.dumps(rec) + "\n"
    with _lock, open(_LOG, "a") as f:
        f.write(line)


def _patch(mod: Any) -> None:
    if not _LOG:
        return
    if mod.__name__ == "searchd.state.checkpoint":
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
    elif mod.__name__ == "searchd.state.store":
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


class _Finder(importlib.abc.MetaPathFinder):
    names = ("searchd.state.checkpoint", "searchd.state.store")

    def find_spec(self, name: str, path: Any, target: Any = None) -> Any:
        if name not in self.names:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is not None and spec.loader is not None:
            spec.loader = _Loader(spec.loader)
        return spec


if _LOG:
    sys.meta_path.insert(0, _Finder())
