"""A job's results checkpoint: a signed base snapshot plus signed deltas.

A flush writes only the results that arrived since the previous flush (a *delta*), so
its cost does not grow with the results already stored. When the deltas hold as many
results as the base, or when a model type finishes, the next flush writes a new base
(compaction) and removes the deltas: every result is written a bounded number of times.
(A base holds every row's columns, so "as many" counts the rows' fits, done or not.) A
flush after rows were added (a strategy's new batch) writes a base too: a delta's entries
name rows by key, and only a base holds the rows themselves.

What is pickled stays plain: a base is a dict (:meth:`Snapshot.to_dict`), a delta a dict
of plain tuples, so checkpoints of earlier versions load here and this version's load there
(except a base whose CV splits, bigger than :data:`SPLITS_INLINE_BYTES`, live in their own
``splits-<digest>`` file, written once: an earlier version sees no splits in it).

Each delta names the base generation it extends; deltas of another generation (left by
a crash between a compaction and their removal) are ignored. Every file is signed and
verified by :class:`~searchd.state.store.CheckpointStore` before it is unpickled.
"""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from searchd.state.results import ModelResults
from searchd.state.store import CheckpointStore

log = logging.getLogger(__name__)

BASE = "results"
DELTA = re.compile(rf"^{BASE}\.d(\d{{6}})\.ckpt$")
#: compaction waits for at least this many results in deltas, whatever the base holds
MIN_COMPACT = 5_000

#: ... or once this many delta files exist (a long job with slow fits), whichever comes first
MAX_DELTAS = 500

#: CV splits whose index arrays take more bytes than this are not repeated in every base:
#: they are written once, to ``splits-<digest>.ckpt``, and the base names that file
#: (``cv = 4000`` on 4,000 rows once wrote 128 MB of splits into every base)
SPLITS_INLINE_BYTES = 1 << 20
SPLITS_FILE = re.compile(r"^splits-([0-9a-f]{16})\.ckpt$")

#: (model type, candidate key, fold, {scorer: score} or None, fit s, score s, error)
Entry = tuple[str, str, int, dict[str, float] | None, float, float, str | None]


@dataclass
class Snapshot:
    """A job's results as a checkpoint holds them (its base, with the deltas applied)."""

    job: str
    #: the frozen spec's and the data's digests when these results were computed
    spec_digest: str
    data_digest: str
    #: the CV splits, (train, test) index arrays per fold, as first computed for the job
    splits: list[tuple[np.ndarray, np.ndarray]]
    models: dict[str, ModelResults]
    saved_at: float
    #: the base's generation (its deltas name it); None until written
    gen: str | None = None
    #: results the job file no longer presents (removed candidates and model types, types
    #: whose estimator changed), by model spec key: an edit that puts them back reuses them
    kept: dict[str, ModelResults] = field(default_factory=dict)
    #: the evaluation context these results were computed in (``jobs.context``); None in
    #: checkpoints of versions before it was recorded
    context: dict[str, Any] | None = None
    #: each model type's version (``jobs.context.type_version``) when last written
    type_versions: dict[str, str] = field(default_factory=dict)
    #: keys this version does not know (a newer one wrote them), kept as they were
    extra: dict[str, Any] = field(default_factory=dict)

    _KEYS = ("job", "spec_digest", "data_digest", "splits", "models", "saved_at", "gen",
             "kept", "context", "type_versions")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Snapshot:
        """From the dict a base pickles (this version's or an earlier one's)."""
        splits = d.get("splits", [])  # a dict names the file that holds them
        return cls(job=d.get("job", ""), spec_digest=d.get("spec_digest", ""),
                   data_digest=d.get("data_digest", ""),
                   splits=list(splits) if isinstance(splits, (list, tuple)) else [],
                   models=dict(d.get("models", {})), saved_at=float(d.get("saved_at", 0.0)),
                   gen=d.get("gen"), kept=dict(d.get("kept") or {}),
                   context=d.get("context"), type_versions=dict(d.get("type_versions") or {}),
                   extra={k: v for k, v in d.items() if k not in cls._KEYS})

    def to_dict(self) -> dict[str, Any]:
        """What a base pickles: a plain dict, the keys earlier versions wrote and read."""
        out = {**self.extra, "job": self.job, "spec_digest": self.spec_digest,
               "data_digest": self.data_digest, "splits": self.splits,
               "models": self.models, "saved_at": self.saved_at}
        if self.kept:
            out["kept"] = self.kept
        if self.context is not None:
            out["context"] = self.context
        if self.type_versions:
            out["type_versions"] = self.type_versions
        if self.gen is not None:
            out["gen"] = self.gen
        return out


def _delta_name(seq: int) -> str:
    return f"{BASE}.d{seq:06d}"


def _delta_files(store: CheckpointStore) -> list[tuple[int, str]]:
    out = []
    for p in store.dir.glob(f"{BASE}.d*.ckpt"):
        m = DELTA.match(p.name)
        if m:
            out.append((int(m.group(1)), _delta_name(int(m.group(1)))))
    return sorted(out)


Split = tuple[np.ndarray, np.ndarray]


def splits_digest(splits: list[Split]) -> str:
    h = hashlib.sha256()
    for train, test in splits:
        for a in (train, test):
            h.update(f"{a.dtype.str}{a.shape}".encode())
            h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()[:16]


def _encode_splits(splits: list[Split]) -> dict[str, Any]:
    """The splits as one test-fold number per row when that gives them back exactly (every
    row in one test set, train sets the sorted rest: (Stratified)KFold's), else as they are."""
    n = sum(len(test) for _, test in splits)
    fold = np.full(n, -1, dtype=np.int32)
    for k, (_, test) in enumerate(splits):
        if test.size and (test.max() >= n or (fold[test] != -1).any()):
            return {"splits": splits}
        fold[test] = k
    if (fold == -1).any() or not _same(_decode_splits({"test_fold": fold}), splits):
        return {"splits": splits}
    return {"test_fold": fold}


def _decode_splits(d: dict[str, Any]) -> list[Split]:
    if "test_fold" in d:
        fold = d["test_fold"]
        return [(np.flatnonzero(fold != k), np.flatnonzero(fold == k))
                for k in range(int(fold.max()) + 1 if fold.size else 0)]
    return list(d["splits"])


def _same(a: list[Split], b: list[Split]) -> bool:
    return len(a) == len(b) and all(
        x.dtype == y.dtype and np.array_equal(x, y)
        for p, q in zip(a, b, strict=True) for x, y in zip(p, q, strict=True))


def _read_splits(store: CheckpointStore, ref: dict[str, Any], quarantine: bool
                 ) -> tuple[list[Split], list[Any]]:
    """The splits a base names; [] when their file is missing or refused (the worker makes
    them again: they are deterministic)."""
    name = f"splits-{ref.get('digest', '')}"
    data, refused = store.read(name, quarantine=quarantine)
    if not isinstance(data, dict):
        log.warning("%s: the CV splits' file %s is missing or refused", store.job_id, name)
        return [], refused
    splits = _decode_splits(data)
    if splits_digest(splits) != ref.get("digest"):
        log.warning("%s: the CV splits in %s do not match their digest", store.job_id, name)
        return [], refused
    return splits, refused


def read_results(store: CheckpointStore, quarantine: bool = False
                 ) -> tuple[Snapshot | None, list[Any]]:
    """The newest good base with its deltas applied, and every file that was refused."""
    with store.lock:  # base and deltas from one moment: no flush lands in between
        data, refused = store.read(BASE, quarantine=quarantine)
        if data is None:
            return None, refused
        base = Snapshot.from_dict(data)
        if isinstance(data.get("splits"), dict):
            base.splits, bad = _read_splits(store, data["splits"], quarantine)
            refused += bad
        applied = 0
        for _seq, name in _delta_files(store):
            delta, bad = store.read(name, quarantine=quarantine)
            refused += bad
            if delta is None or delta.get("gen") != base.gen:
                continue  # refused, or it extends another generation
            applied += apply(base.models, delta["entries"])
    if applied:
        log.debug("%s: applied %d results from deltas", store.job_id, applied)
    return base, refused


def apply(models: dict[str, ModelResults], entries: list[Entry]) -> int:
    """Record delta entries, in order, into the models' results by candidate key; returns
    how many were recorded. An entry of an unknown model type, candidate or fold is
    skipped; one recorded again replaces the earlier (the last one wins)."""
    n = 0
    for model, key, fold, scores, fit_time, score_time, error in entries:
        res = models.get(model)
        if res is None:
            continue
        i = res.row_of(key)
        if i is None or not 0 <= fold < res.n_folds:
            continue
        res.record(i, fold, scores, fit_time, score_time, error)
        n += 1
    return n


class ResultsCheckpoint:
    """The writer side, used by the worker (one per job, one process at a time)."""

    def __init__(self, store: CheckpointStore) -> None:
        self.store = store
        self.gen: str | None = None
        self.seq = 0
        self.base_entries = 0
        self.delta_entries = 0
        #: results recorded since the last successful flush
        self.pending: list[Entry] = []
        #: rows were added since the last base: the next flush writes a base
        self.rows_added = False
        #: the splits last written to their own file: (the list's id, its digest)
        self._splits_ref: tuple[int, str] | None = None

    def note(self, entry: Entry) -> None:
        self.pending.append(entry)

    def note_rows(self) -> None:
        """Rows were added to a model type's results (only a base can hold them)."""
        self.rows_added = True

    def flush(self, snapshot: Callable[[], Snapshot], compact: bool = False) -> int:
        """Write a delta, or a new base when due; returns the bytes written.

        Raises OSError (disk full, I/O error) with nothing lost: the pending results stay
        pending and the files on disk are the last good ones.
        """
        due = (self.delta_entries + len(self.pending) > max(self.base_entries, MIN_COMPACT)
               or self.seq >= MAX_DELTAS)
        if compact or self.gen is None or due or self.rows_added:
            return self._write_base(snapshot())
        if not self.pending:
            return 0
        seq = self.seq + 1
        written = self.store.write_once(_delta_name(seq),
                                        {"gen": self.gen, "seq": seq, "entries": self.pending})
        self.seq = seq
        self.delta_entries += len(self.pending)
        self.pending = []
        return written

    def _splits_file(self, splits: list[Split]) -> dict[str, str]:
        """Write big splits to their own file, once (its name is their digest); returns
        what the base holds in their place."""
        if self._splits_ref is None or self._splits_ref[0] != id(splits):
            digest = splits_digest(splits)
            if not self.store.path(f"splits-{digest}").exists():
                self.store.write(f"splits-{digest}", _encode_splits(splits))
            self._splits_ref = (id(splits), digest)
        return {"digest": self._splits_ref[1]}

    def _write_base(self, snap: Snapshot) -> int:
        gen = secrets.token_hex(8)
        base = {**snap.to_dict(), "gen": gen}
        if sum(a.nbytes + b.nbytes for a, b in snap.splits) > SPLITS_INLINE_BYTES:
            base["splits"] = self._splits_file(snap.splits)
        written = self.store.write(BASE, base)
        # splits files the base no longer names (the data or the CV changed)
        keep = base["splits"].get("digest") if isinstance(base["splits"], dict) else None
        for p in self.store.dir.glob("splits-*.ckpt"):
            m = SPLITS_FILE.match(p.name)
            if m and m.group(1) != keep:
                self.store.remove(p.name[:-len(".ckpt")])
        # the new base holds everything: older deltas are now redundant
        for _seq, name in _delta_files(self.store):
            self.store.remove(name)
        self.gen, self.seq = gen, 0
        # a base carries every row's columns, done or not: its size is fits_total
        self.base_entries = sum(m.fits_total for m in snap.models.values())
        self.delta_entries = 0
        self.pending = []
        self.rows_added = False
        return written
