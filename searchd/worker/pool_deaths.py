"""What a pool process's death means for the tasks it had: which were lost (less the chain
links they reported), then, from the fit records (:mod:`searchd.worker.poison`), which are
struck, failed, or handed back to the stream."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable

from searchd.worker import chains, linkstream, poison
from searchd.worker.evaluate import Outcome, Task
from searchd.worker.poison import FitGuard
from searchd.worker.taskstream import TaskStream

log = logging.getLogger("searchd.worker.local_runner")


def lost(st: TaskStream, inflight: Iterable[tuple[list[Task], linkstream.Reader | None]]
         ) -> list[Task]:
    """The tasks of batches in flight when their process died, less the links they
    reported (recorded here: a chain goes on from its first link missing)."""
    out: list[Task] = []
    for batch, reader in inflight:
        if reader is None:
            out.extend(batch)
            continue
        for outcome in reader.read():
            st.out.put(outcome)
        reader.remove()
        out.extend(t for t in (chains.not_done(t, reader.seen) for t in batch)
                   if t is not None)
    return out


def after_death(g: FitGuard, st: TaskStream, lost: list[Task], message: str) -> None:
    """A pool process died: the task its record names is struck (recorded as failed
    after its second death, else held back for the job to re-run alone), one that ran
    past max_fit_seconds is recorded as failed; every other task in flight runs again."""
    signals = sorted(set(re.findall(r"SIG[A-Z0-9]+", message)))
    how = f"killed by {', '.join(signals)}" if signals else "it exited"
    records = [r for r in poison.read_records(g.folder) if r.role == "pool"]
    # a chain that a record names (at any link) is handled link by link from here on
    named = {r.tag for r in records}
    lost = [u for t in lost for u in (chains.unchain(t) if named & chains.tags(t) else [t])]
    by_tag = {t.tag: t for t in lost}
    timed_out = any(r.state == poison.TIMEOUT for r in records)
    held: set[str] = set()
    for r in records:
        t = by_tag.get(r.tag)
        if t is None:
            continue
        if r.state == poison.TIMEOUT:
            error = poison.timeout_error(g.limit)
            g.strikes.fail(r.tag, error)
            log.warning("a fit ran past max_fit_seconds (%g s) in pool process %d: "
                        "stopped, recorded as failed", g.limit, r.pid)
            st.out.put(Outcome(t.i, t.fold, None, g.limit, 0.0, error))
            held.add(r.tag)
        elif not timed_out:  # else it died because loky ended the pool
            n = g.strikes.strike(r.tag, how)
            log.warning("pool process %d died (%s) while fitting %s (%d of %d deaths "
                        "before it is recorded as failed)", r.pid, how, r.tag, n,
                        poison.MAX_FIT_DEATHS)
            failed = g.strikes.error(r.tag)
            if failed is not None:
                st.out.put(Outcome(t.i, t.fold, None, 0.0, 0.0, failed))
            held.add(r.tag)  # not failed yet: the job re-runs it alone
    poison.forget(g.folder, {r.pid for r in records})
    st.push_back([t for t in lost if t.tag not in held])
