"""The results checkpoint: base + deltas, compaction, stale and bad deltas."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from searchd.state import checkpoint
from searchd.state.checkpoint import ResultsCheckpoint, Snapshot, read_results
from searchd.state.results import ModelResults
from searchd.state.signing import load_key
from searchd.state.store import CheckpointStore


def _model(n: int = 10, folds: int = 3) -> ModelResults:
    return ModelResults.empty("m", "spec", [f"k{i}" for i in range(n)],
                              [{"p": i} for i in range(n)], ("score",), "score", folds)


@pytest.fixture
def store(tmp_path: Path) -> CheckpointStore:
    d = tmp_path / "job"
    d.mkdir()
    return CheckpointStore(d, load_key(tmp_path, create=True), "job")


def _record(res: ModelResults, ck: ResultsCheckpoint, i: int, fold: int) -> None:
    scores = {"score": i + fold / 10}
    res.record(i, fold, scores, 0.1, 0.01, None)
    ck.note(("m", res.keys[i], fold, scores, 0.1, 0.01, None))


def _snap(res: ModelResults) -> Callable[[], Snapshot]:
    return lambda: Snapshot(job="job", spec_digest="s", data_digest="d", splits=[],
                            models={"m": res}, saved_at=0.0)


def test_flushes_after_the_first_write_only_deltas(store: CheckpointStore) -> None:
    res, ck = _model(), ResultsCheckpoint(store)
    ck.flush(_snap(res))  # the base
    for i in range(4):
        _record(res, ck, i, 0)
        ck.flush(_snap(res))
    deltas = sorted(p.name for p in store.dir.glob("results.d*.ckpt"))
    assert deltas == [f"results.d00000{i}.ckpt" for i in range(1, 5)]
    back, refused = read_results(store)
    assert refused == [] and back is not None
    assert back.models["m"].fits_done == 4
    assert back.models["m"].scores["score"][3, 0] == 3.0


def test_compaction_writes_a_base_and_drops_the_deltas(store: CheckpointStore,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(checkpoint, "MAX_DELTAS", 3)
    res, ck = _model(n=3, folds=2), ResultsCheckpoint(store)  # a grid of 6 results
    ck.flush(_snap(res))
    for i in range(3):
        _record(res, ck, i, 0)
        ck.flush(_snap(res))
    assert len(list(store.dir.glob("results.d*.ckpt"))) == 3
    _record(res, ck, 0, 1)
    ck.flush(_snap(res))  # a 4th delta would pass MAX_DELTAS: a new base instead
    assert not list(store.dir.glob("results.d*.ckpt"))
    for i in range(1, 3):
        _record(res, ck, i, 1)
        ck.flush(_snap(res))
    assert len(list(store.dir.glob("results.d*.ckpt"))) == 2
    ck.flush(_snap(res), compact=True)
    assert not list(store.dir.glob("results.d*.ckpt"))
    back, _ = read_results(store)
    assert back is not None and back.models["m"].fits_done == 6


def test_a_bad_or_stale_delta_is_never_applied(store: CheckpointStore) -> None:
    res, ck = _model(), ResultsCheckpoint(store)
    ck.flush(_snap(res))
    _record(res, ck, 0, 0)
    ck.flush(_snap(res))
    _record(res, ck, 1, 0)
    ck.flush(_snap(res))
    bad = store.dir / "results.d000002.ckpt"
    b = bytearray(bad.read_bytes())
    b[-1] ^= 1
    bad.write_bytes(bytes(b))
    # a delta signed for another slot (renamed) fails its signature too
    os.replace(store.dir / "results.d000001.ckpt", store.dir / "results.d000009.ckpt")
    back, refused = read_results(store, quarantine=True)
    assert back is not None and back.models["m"].fits_done == 0
    assert len(refused) == 2 and len(list((store.dir / "quarantine").glob("*.reason"))) == 2
    # a delta of an older base generation is ignored
    other = ResultsCheckpoint(store)
    other.flush(_snap(_model()))
    _record(res, ck, 2, 0)
    ck.gen, ck.seq = "stale", 5
    ck.flush(_snap(res))
    back, refused = read_results(store)
    assert back is not None and back.models["m"].fits_done == 0 and refused == []


def test_a_failed_delta_keeps_its_results_pending(store: CheckpointStore,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    res, ck = _model(), ResultsCheckpoint(store)
    ck.flush(_snap(res))
    _record(res, ck, 0, 0)

    def full(*args: Any, **kwargs: Any) -> int:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(store, "write_once", full)
    with pytest.raises(OSError):
        ck.flush(_snap(res))
    assert len(ck.pending) == 1 and ck.seq == 0
    monkeypatch.undo()
    ck.flush(_snap(res))
    back, _ = read_results(store)
    assert back is not None and back.models["m"].fits_done == 1
