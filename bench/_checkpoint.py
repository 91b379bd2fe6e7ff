"""Checkpoint cost in-process: searchd's own ResultsCheckpoint on a temporary job folder.

For each size N (results already stored), a model type of N/5 + spare candidates x 5
folds is filled with N results and written as a base; then ``--deltas`` times 100 new
results are noted and flushed (a delta each, as the worker's 5-second flush does), and
``--compactions`` times a base is forced (the compaction a finished model type or a full
delta set triggers). Reading it all back (a restart's resume) is timed too. Timings are
medians of wall time around ``ResultsCheckpoint.flush`` (pickle, HMAC, write, fsync,
rename, folder fsync), and bytes are what it returns: the file's size.
"""

from __future__ import annotations

import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from searchd.state.checkpoint import ResultsCheckpoint, Snapshot, read_results
from searchd.state.results import ModelResults
from searchd.state.signing import load_key
from searchd.state.store import CheckpointStore
from searchd.worker.plan import content_key

FOLDS = 5
DELTA_RESULTS = 100


def _model(n_candidates: int) -> ModelResults:
    # parameters shaped like the "many" workload's: three grid keys per candidate
    params = [{"max_depth": 1 + i % 100, "max_features": 1 + (i // 100) % 4,
               "min_samples_leaf": 1 + i // 400} for i in range(n_candidates)]
    return ModelResults.empty("tree", "spec", [content_key(p) for p in params], params,
                              ("score",), "score", FOLDS)


def _entry(res: ModelResults, i: int, fold: int, rng: np.random.Generator) -> Any:
    scores = {"score": float(rng.random())}
    fit, score = float(rng.random() / 1000), float(rng.random() / 1000)
    res.record(i, fold, scores, fit, score, None)
    return ("tree", res.keys[i], fold, scores, fit, score, None)


def measure_size(root: Path, stored: int, deltas: int, compactions: int) -> dict[str, Any]:
    folder = root / f"n{stored}"
    job_dir = folder / "job"
    job_dir.mkdir(parents=True)
    store = CheckpointStore(job_dir, load_key(folder, create=True), "job")
    spare = (deltas * DELTA_RESULTS) // FOLDS + 1
    res = _model(stored // FOLDS + spare)
    rng = np.random.default_rng(0)
    splits = [(np.arange(120), np.arange(120, 150))] * FOLDS
    for k in range(stored):
        _entry(res, k // FOLDS, k % FOLDS, rng)

    def snapshot() -> Snapshot:
        return Snapshot(job="job", spec_digest="x", data_digest="y", splits=splits,
                        models={"tree": res}, saved_at=time.time())

    ck = ResultsCheckpoint(store)
    t0 = time.perf_counter()
    first = ck.flush(snapshot)  # the base: N results
    first_s = time.perf_counter() - t0
    delta_s, delta_b = [], []
    k = stored
    for _ in range(deltas):
        for _ in range(DELTA_RESULTS):
            ck.note(_entry(res, k // FOLDS, k % FOLDS, rng))
            k += 1
        t0 = time.perf_counter()
        b = ck.flush(snapshot)
        delta_s.append(time.perf_counter() - t0)
        delta_b.append(b)
        assert ck.seq > 0, "expected a delta, got a compaction"
    read_s = []
    for _ in range(3):
        t0 = time.perf_counter()
        back, _ = read_results(store)
        read_s.append(time.perf_counter() - t0)
        assert back is not None and back.models["tree"].fits_done == k
    base_s, base_b = [], []
    for _ in range(compactions):
        t0 = time.perf_counter()
        base_b.append(ck.flush(snapshot, compact=True))
        base_s.append(time.perf_counter() - t0)
    shutil.rmtree(folder, ignore_errors=True)
    return {"stored": stored, "delta_results": DELTA_RESULTS,
            "delta_ms": 1000 * statistics.median(delta_s),
            "delta_ms_max": 1000 * max(delta_s), "delta_bytes": statistics.median(delta_b),
            "base_ms": 1000 * statistics.median(base_s + [first_s]),
            "base_bytes": statistics.median(base_b + [first]),
            "resume_read_ms": 1000 * statistics.median(read_s)}


def measure(sizes: tuple[int, ...], deltas: int, compactions: int) -> list[dict[str, Any]]:
    root = Path(tempfile.mkdtemp(prefix="searchd-bench-ckpt-"))
    try:
        return [measure_size(root, n, deltas, compactions) for n in sizes]
    finally:
        shutil.rmtree(root, ignore_errors=True)
