"""A job's results checkpoint: a signed base snapshot plus signed deltas.

A flush writes only the results that arrived since the previous flush (a *delta*), so
its cost does not grow with the results already stored. When the deltas hold as many
results as the base, or when a model type finishes, the next flush writes a new base
(compaction) and removes the deltas: every result is written a bounded number of times.
(A base holds the whole grid's columns, so "as many" counts the grid's size.)

Each delta names the base generation it extends; deltas of another generation (left by
a crash between a compaction and their removal) are ignored. Every file is signed and
verified by :class:`~searchd.state.store.CheckpointStore` before it is unpickled.
"""

from __future__ import annotations

import logging
import re
import secrets
from collections.abc import Callable
from typing import Any

from searchd.state.store import CheckpointStore

log = logging.getLogger(__name__)

BASE = "results"
DELTA = re.compile(rf"^{BASE}\.d(\d{{6}})\.ckpt$")
#: compaction waits for at least this many results in deltas, whatever the base holds
MIN_COMPACT = 5_000

#: ... or once this many delta files exist (a long job with slow fits), whichever comes first
MAX_DELTAS = 500

#: (model type, candidate key, fold, {scorer: score} or None, fit s, score s, error)
Entry = tuple[str, str, int, dict[str, float] | None, float, float, str | None]


def _delta_name(seq: int) -> str:
    return f"{BASE}.d{seq:06d}"


def _delta_files(store: CheckpointStore) -> list[tuple[int, str]]:
    out = []
    for p in store.dir.glob(f"{BASE}.d*.ckpt"):
        m = DELTA.match(p.name)
        if m:
            out.append((int(m.group(1)), _delta_name(int(m.group(1)))))
    return sorted(out)


def read_results(store: CheckpointStore, quarantine: bool = False
                 ) -> tuple[dict[str, Any] | None, list[Any]]:
    """The newest good base with its deltas applied, and every file that was refused."""
    with store.lock:  # base and deltas from one moment: no flush lands in between
        base, refused = store.read(BASE, quarantine=quarantine)
        if base is None:
            return None, refused
        applied = 0
        for _seq, name in _delta_files(store):
            delta, bad = store.read(name, quarantine=quarantine)
            refused += bad
            if delta is None or delta.get("gen") != base.get("gen"):
                continue  # refused, or it extends another generation
            applied += apply(base, delta["entries"])
    if applied:
        log.debug("%s: applied %d results from deltas", store.job_id, applied)
    return base, refused


def apply(snapshot: dict[str, Any], entries: list[Entry]) -> int:
    """Record delta entries into a snapshot's ModelResults, by candidate key."""
    index: dict[str, dict[str, int]] = {}
    n = 0
    for model, key, fold, scores, fit_time, score_time, error in entries:
        res = snapshot["models"].get(model)
        if res is None:
            continue
        rows = index.get(model)
        if rows is None:
            rows = index[model] = {k: i for i, k in enumerate(res.keys)}
        i = rows.get(key)
        if i is None or fold >= res.n_folds:
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

    def note(self, entry: Entry) -> None:
        self.pending.append(entry)

    def flush(self, snapshot: Callable[[], dict[str, Any]], compact: bool = False) -> int:
        """Write a delta, or a new base when due; returns the bytes written.

        Raises OSError (disk full, I/O error) with nothing lost: the pending results stay
        pending and the files on disk are the last good ones.
        """
        due = (self.delta_entries + len(self.pending) > max(self.base_entries, MIN_COMPACT)
               or self.seq >= MAX_DELTAS)
        if compact or self.gen is None or due:
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

    def _write_base(self, snap: dict[str, Any]) -> int:
        gen = secrets.token_hex(8)
        written = self.store.write(BASE, {**snap, "gen": gen})
        # the new base holds everything: older deltas are now redundant
        for _seq, name in _delta_files(self.store):
            self.store.remove(name)
        self.gen, self.seq = gen, 0
        # a base carries the whole grid's columns, done or not: its size is fits_total
        self.base_entries = sum(m.fits_total for m in snap["models"].values())
        self.delta_entries = 0
        self.pending = []
        return written
