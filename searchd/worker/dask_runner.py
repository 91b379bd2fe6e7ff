"""Evaluating a job's (candidate, fold) tasks on a Dask cluster.

The worker process connects to the scheduler as a client, scatters the training
data and the CV splits to every Dask worker once per job, submits one future per
(candidate, fold) task (a warm-start chain, or a run of tasks sharing their preprocessing,
is one task, its links put on a cluster queue as each is scored) with
at most ``2 × the cluster's threads`` outstanding (so a stop or a kill loses little), and
yields each outcome as it completes (``distributed.as_completed``). Checkpoints never
leave the worker's machine.

Importing this module is cheap (``distributed`` is imported on first use), so the
supervisor can check the extra is installed without paying for it.
"""

from __future__ import annotations

import importlib.util
import logging
import time
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from searchd.errors import JobSpecError, SearchdError

if TYPE_CHECKING:
    import numpy as np

    from searchd.worker.evaluate import Outcome, Task
    from searchd.worker.plan import Scoring, Split

log = logging.getLogger(__name__)
# distributed reports a closed connection at INFO with a traceback; searchd logs the loss of
# the scheduler itself, in one line
logging.getLogger("distributed.batched").setLevel(logging.WARNING)

#: what a request in flight raises when the scheduler goes away
_CLOSED = ("CommClosedError", "StreamClosedError")


class _NoClosedCommTracebacks(logging.Filter):
    """Each request of the client in flight when the scheduler goes away (an
    ``as_completed`` gather, say) ends in tornado's "Exception in callback" with a
    traceback; searchd says the loss itself, in one line ("lost the Dask scheduler")."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        chain: list[str] = []
        while exc is not None and len(chain) < 10:
            chain.append(type(exc).__name__)
            exc = exc.__cause__ or exc.__context__
        return not (any(name in _CLOSED for name in chain)
                    or any(name in record.getMessage() for name in _CLOSED))


logging.getLogger("tornado.application").addFilter(_NoClosedCommTracebacks())

EXTRA_HINT = "pip install 'searchd[dask]'"
#: part of the reason given to a job that asks for a cluster the daemon does not have
NO_SCHEDULER = "asks for a Dask cluster (backend = \"dask\") but the daemon has none"
#: seconds between two refreshes of the cluster's worker and thread counts
INFO_INTERVAL = 2.0
#: seconds between two looks at the links the cluster's chains and runs have scored
LINK_POLL = 0.1


class DaskMissingError(SearchdError):
    """``dask[distributed]`` cannot be imported."""

    exit_code = 2

    def __init__(self, message: str = "") -> None:
        super().__init__(message or f"the Dask backend needs dask[distributed]: {EXTRA_HINT}")


class ClusterUnavailableError(SearchdError):
    """The scheduler cannot be reached or the connection was lost: wait and retry."""


class ClusterTaskError(SearchdError):
    """A task failed on the cluster for a reason other than its fit (environment, crashes)."""


def missing_extra() -> str | None:
    """The error message when ``distributed`` is not importable, else None (imports nothing)."""
    try:
        found = importlib.util.find_spec("distributed") is not None
    except (ImportError, ValueError):
        found = False
    return None if found else str(DaskMissingError())


def no_scheduler_message(path: Path | str) -> str:
    return (f"{path}: search.backend: the job {NO_SCHEDULER}; start the daemon with "
            f"--dask ADDRESS (or dask_scheduler in its config file)")


def cluster_address(backend: str, address: str | None, path: Path | str) -> str | None:
    """The scheduler a job runs on: every job uses the daemon's scheduler when it has one.

    A job that asks for ``backend = "dask"`` while the daemon has no scheduler is invalid.
    """
    if not address and backend == "dask":
        raise JobSpecError(no_scheduler_message(path))
    return address or None


def _evaluate_fold(template: Any, params: dict[str, Any], X: np.ndarray, y: np.ndarray,
                   splits: list[tuple[np.ndarray, np.ndarray]], scoring: Scoring, i: int,
                   fold: int, split: tuple[np.ndarray, np.ndarray] | None = None) -> Outcome:
    """Runs on a Dask worker: one task, with the data and splits it already holds
    (``split``: the task's own indices, a halving round's subsample of its fold)."""
    from searchd.worker.evaluate import evaluate
    train, test = splits[fold] if split is None else split
    return evaluate(template, params, X, y, train, test, scoring, i, fold)


def _evaluate_chain(template: Any, t: Task, X: np.ndarray, y: np.ndarray,
                    splits: list[tuple[np.ndarray, np.ndarray]], scoring: Scoring,
                    cache_mb: float = 0.0, links: str | None = None) -> list[Outcome]:
    """Runs on a Dask worker: a warm-start chain's or a run's links, returned together and
    each also put, as it is scored, on the cluster queue named ``links`` (a JSON line:
    :mod:`searchd.worker.linkstream`); their deterministic preprocessing fitted once for
    the task (a cache of its own)."""
    from searchd.worker.evaluate import run_task
    from searchd.worker.linkstream import encode
    from searchd.worker.prefit import make_cache
    queue = None
    if links is not None:
        from distributed import Queue
        queue = Queue(links)
    out = []
    try:
        for o in run_task(template, t, X, y, splits, scoring, cache=make_cache(cache_mb)):
            out.append(o)
            if queue is not None:
                try:
                    queue.put(encode(o).decode())
                except (OSError, TimeoutError):  # the result below still says it
                    queue = None
    finally:
        if queue is not None:
            queue.close()  # this task's hold on it (the worker's client releases its own)
    return out


class DaskCluster:
    """One job's connection to a Dask scheduler; connects on first use (a ``Runner``)."""

    backend = "dask"
    #: no local processes fit (the progress event's ``processes``)
    processes = None

    def __init__(self, address: str, job_id: str, X: np.ndarray, y: np.ndarray,
                 splits: list[Split], cache_mb: float = 0.0) -> None:
        self.address, self.job_id = address, job_id
        #: MiB of shared preprocessing a chain's or a run's task keeps (0: none)
        self.cache_mb = cache_mb
        self.X, self.y, self.splits = X, y, splits
        self.client: Any = None
        #: workers and threads the scheduler last reported (None until connected)
        self.workers: int | None = None
        self.threads = 0
        self._info_at = 0.0
        self._data: tuple[Any, ...] | None = None
        self._data_of: tuple[int, ...] = ()

    def connect(self) -> None:
        if self.client is not None:
            return
        try:
            import dask
            from distributed import Client
        except ImportError as e:
            raise DaskMissingError(f"the Dask backend needs dask[distributed]: {EXTRA_HINT} "
                                   f"({e})") from None
        timeout = dask.config.get("distributed.comm.timeouts.connect")
        try:
            self.client = Client(self.address, timeout=timeout, set_as_default=False)
        except (OSError, TimeoutError) as e:
            raise ClusterUnavailableError(
                f"cannot reach the Dask scheduler at {self.address}: "
                f"{_one_line(e)}") from None
        self.refresh(force=True)
        log.info("%s: connected to the Dask scheduler at %s: %d worker(s), %d thread(s)",
                 self.job_id, self.address, self.workers or 0, self.threads)

    def refresh(self, force: bool = False) -> None:
        """Update the worker and thread counts (a round trip, so at most every 2 s)."""
        now = time.monotonic()
        if not force and now - self._info_at < INFO_INTERVAL:
            return
        self._info_at = now
        try:
            info = self.client.scheduler_info(n_workers=0)
        except (OSError, TimeoutError) as e:
            raise self._lost(e) from None
        self.workers, self.threads = int(info["n_workers"]), int(info["total_threads"])

    def _lost(self, e: BaseException | str) -> ClusterUnavailableError:
        return ClusterUnavailableError(f"lost the Dask scheduler at {self.address}: "
                                       f"{_one_line(e)}")

    def _scatter(self, X: np.ndarray, y: np.ndarray,
                 splits: list[tuple[np.ndarray, np.ndarray]]) -> tuple[Any, ...]:
        """The job's data on every worker, sent once per job (not once per task)."""
        ids = (id(X), id(y), id(splits))
        if self._data is None or self._data_of != ids:
            start = time.monotonic()
            try:
                self._data = tuple(self.client.scatter(v, broadcast=True, hash=False)
                                   for v in (X, y, splits))
            except (OSError, TimeoutError) as e:
                raise self._lost(e) from None
            self._data_of = ids
            log.info("%s: data scattered to %d Dask worker(s) in %.2fs (%.1f MB)", self.job_id,
                     self.workers or 0, time.monotonic() - start, (X.nbytes + y.nbytes) / 1e6)
        return self._data

    def stream(self, template: Any, tasks: Iterable[Task], scoring: Scoring,
               count: int | None = None) -> Iterator[Outcome]:
        """Submit tasks to the cluster, a bounded number at a time; yield as each finishes."""
        self.connect()  # first: it turns a missing extra into a clear error
        from distributed import as_completed

        client = self.client
        Xf, yf, sf = self._scatter(self.X, self.y, self.splits)
        try:
            tf, scf = client.scatter([template, scoring], broadcast=True, hash=False)
        except (OSError, TimeoutError) as e:
            raise self._lost(e) from None
        pending = iter(tasks)
        done = as_completed(loop=client.loop, with_results=True, raise_errors=False)
        outstanding = 0
        links = self._links()
        #: the keys of the chains' and runs' futures in flight
        chained: set[str] = set()
        #: (row, fold) of the links already yielded: each once, from the queue or the result
        said: set[tuple[int, int]] = set()

        def submit_more() -> None:
            nonlocal outstanding
            while outstanding < max(2, 2 * self.threads):
                t = next(pending, None)
                if t is None:
                    return
                # a unique key: the same task resubmitted after a restart is new work
                key = f"searchd-eval-{uuid.uuid4().hex}"
                if t.links:
                    done.add(client.submit(_evaluate_chain, tf, t, Xf, yf, sf, scf,
                                           self.cache_mb, links and links.name, key=key))
                    chained.add(key)
                else:
                    done.add(client.submit(_evaluate_fold, tf, t.params, Xf, yf, sf, scf, t.i,
                                           t.fold, t.split, key=key))
                outstanding += 1

        def new(outcomes: list[Outcome]) -> list[Outcome]:
            fresh = [o for o in outcomes if (o.i, o.fold) not in said]
            said.update((o.i, o.fold) for o in fresh)
            return fresh

        try:
            submit_more()
            while outstanding:
                if links is not None and chained and not done.has_ready():
                    yield from new(self._streamed(links))  # the links scored so far
                    time.sleep(LINK_POLL)
                    continue
                future, result = next(done)
                outstanding -= 1
                status, key = future.status, future.key
                del future  # releases the task's result on the cluster
                if status == "cancelled":  # the client cancels all when it loses the scheduler
                    raise self._lost(getattr(result, "reason", None) or "tasks cancelled")
                if status != "finished":  # result is (type, exception, traceback)
                    raise self._failed(result[1] if isinstance(result, tuple) else result)
                if key in chained:
                    chained.discard(key)
                    yield from new(result)
                else:
                    yield result
                self.refresh()
                submit_more()
        finally:
            if links is not None:
                self._close_links(links)

    def _links(self) -> Any:
        """A cluster queue for the links of this stream's chains and runs (None when the
        scheduler has none: their links then come when each ends)."""
        from distributed import Queue
        try:
            return Queue(f"searchd-links-{uuid.uuid4().hex}", client=self.client)
        except (OSError, TimeoutError, KeyError) as e:
            log.info("%s: no queue on the Dask scheduler (%s): a chain's links come when it "
                     "ends", self.job_id, _one_line(e))
            return None

    def _streamed(self, links: Any) -> list[Outcome]:
        """The links on the queue so far (data only: a line that does not parse is left to
        its task's result)."""
        from searchd.worker.linkstream import decode
        try:
            items = links.get(batch=True)
        except (OSError, TimeoutError) as e:
            raise self._lost(e) from None
        out = []
        for item in items:
            try:
                out.append(decode(item.encode() if isinstance(item, str) else b""))
            except (ValueError, TypeError, OverflowError):
                log.warning("%s: an unreadable link on the Dask queue; its chain's result "
                            "will say it", self.job_id)
        return out

    def _close_links(self, links: Any) -> None:
        try:
            links.close()
        except (OSError, TimeoutError, RuntimeError) as e:
            log.debug("%s: closing the links queue: %s", self.job_id, e)

    def _failed(self, e: BaseException) -> ClusterTaskError:
        name = type(e).__name__
        if name == "KilledWorker":
            return ClusterTaskError(f"a task killed {self.address}'s workers repeatedly "
                                    f"(out of memory or a crash?): {_one_line(e)}")
        return ClusterTaskError(
            f"a task failed on the Dask cluster at {self.address}: {name}: {_one_line(e)} "
            "(every Dask worker needs searchd and the same scikit-learn and numpy)")

    def close(self) -> None:
        if self.client is None:
            return
        try:
            self.client.close(timeout=5)
        except (OSError, TimeoutError) as e:
            log.debug("%s: closing the Dask client: %s", self.job_id, e)
        self.client = None


def _one_line(e: BaseException | str) -> str:
    text = str(e).strip() or type(e).__name__
    return " ".join(text.split())


__all__ = ["ClusterTaskError", "ClusterUnavailableError", "DaskCluster", "DaskMissingError",
           "cluster_address", "missing_extra", "no_scheduler_message"]
