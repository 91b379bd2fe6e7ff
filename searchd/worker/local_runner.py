"""The local runner: a job's tasks fitted in the worker itself and in n_jobs - 1 processes.

Results stream back as each task finishes, so the worker can checkpoint them while the
others still run. See :class:`LocalRunner` for when the pool starts and how it is fed.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, wait
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

import joblib
import numpy as np
from joblib import effective_n_jobs
from joblib.externals.loky import ProcessPoolExecutor
from joblib.parallel import ParallelBackendBase
from threadpoolctl import ThreadpoolController, threadpool_limits

from searchd.worker import linkstream, poison, pool_deaths
from searchd.worker.data import nbytes
from searchd.worker.evaluate import Outcome, Task, evaluate_batch, pool_init, run_task, warm
from searchd.worker.plan import Scoring
from searchd.worker.prefit import make_cache
from searchd.worker.taskstream import END, TaskStream

log = logging.getLogger(__name__)

#: a batch sent to a pool process holds about this many seconds of tasks (fewer near the end)
BATCH_SECONDS = 0.1
#: and at most this many tasks
MAX_BATCH = 500
#: seconds between two looks at the links the pool's chains and runs have scored
LINK_POLL = 0.2
#: data bigger than this goes to the pool's processes as a memory map, not a copy each
MMAP_BYTES = 32 * 2**20
#: seconds of fits the worker runs alone before it starts its pool in any case
INLINE_SECONDS = 1.0
#: ... or sooner, once the tasks left would take longer than this at the rate seen so far
#: (starting a pool process costs about a second of the core it starts on)
POOL_WORTH_SECONDS = 2.0


class LocalRunner:
    """Runs a job's tasks on this machine: in the worker itself and in n_jobs - 1 processes.

    The worker process fits tasks itself from the first task on: it is already running,
    with scikit-learn imported. As soon as its fits show that the tasks left are worth
    more than a pool's start (~2 s of them at the rate seen, or after 1 s of fits), it
    starts n_jobs - 1 loky processes in the background (a fresh interpreter
    each, importing scikit-learn: about a second of a core the idle gate found idle) and,
    once they are up, feeds them batches of tasks from the same queue while it goes on
    fitting. So no job waits for the pool, a small one never starts it, a big one runs on
    one process fewer than ``GridSearchCV(n_jobs)`` starts, and the pool's processes get
    the data once, at their start (a memory map if it is big), not with every task. The
    pool serves the job's later model types too.

    Scores are the same wherever a task runs: each is the same clone → set_params → fit →
    score (``evaluate``). Results are handed over as each task finishes, whoever ran it,
    and a chain's or a run's links one by one as each is scored (from the pool through
    :mod:`searchd.worker.linkstream`).
    """

    def __init__(self, n_jobs: int, X: np.ndarray, y: np.ndarray,
                 splits: list[tuple[np.ndarray, np.ndarray]],
                 scratch: Path | None = None, guard: poison.FitGuard | None = None,
                 cache_mb: float = 0.0) -> None:
        self.n_jobs = effective_n_jobs(n_jobs)
        #: MiB of shared preprocessing each process keeps (searchd.worker.prefit; 0: none)
        self.cache_mb = cache_mb
        self.cache = make_cache(cache_mb)
        #: fit records, strikes and the fit time limit (None: none of that, e.g. in tools)
        self.guard = guard
        self._payload: Any = None
        self.X, self.y, self.splits = X, y, splits
        self.scratch = scratch
        if scratch is not None:  # a killed worker's link files say nothing to this one
            linkstream.remove_stale(scratch)
        self.ready = threading.Event()
        self.starter: threading.Thread | None = None
        self.start_error: BaseException | None = None
        self._pool: ProcessPoolExecutor | None = None
        self._tasks_seen, self._seconds_seen = 0, 0.0
        self.inline_seconds = 0.0
        #: BLAS/OpenMP threads per fit while the worker shares the cores with its pool
        self.threads = max(1, (os.cpu_count() or 1) // self.n_jobs)
        self._lock = threading.Lock()
        self._closed = False
        self._threadpools: ThreadpoolController | None = None  # made at the first fit

    backend = "local"

    @property
    def processes(self) -> int:
        """How many processes fit now: 1 until the pool is up, then n_jobs."""
        return self.n_jobs if self.ready.is_set() and self.start_error is None else 1

    @property
    def workers(self) -> None:
        """No cluster: see ``processes``."""
        return None

    # --- the pool --------------------------------------------------------------------------

    def _pool_payload(self) -> Any:
        """The data for the pool's initializer: itself, or a memory-mapped file's path."""
        data = (self.X, self.y, self.splits)
        size = nbytes(self.X) + self.y.nbytes + sum(a.nbytes + b.nbytes for a, b in self.splits)
        if self.scratch is None or size < MMAP_BYTES:
            return data
        self.scratch.mkdir(mode=0o700, exist_ok=True)
        path = self.scratch / "data.joblib"
        joblib.dump(data, path)
        return str(path)

    def start_pool(self) -> None:
        """Start the pool's processes in the background, once (``ready`` says when done)."""
        if self.n_jobs > 1 and self.starter is None:
            self.starter = threading.Thread(target=self._start_pool, name="pool-start",
                                            daemon=True)
            self.starter.start()

    def _new_pool(self) -> ProcessPoolExecutor:
        """n_jobs - 1 processes, up and holding the data."""
        # what joblib gives its own workers: no oversubscription by BLAS/OpenMP threads
        env = {var: os.environ.get(var, str(self.threads))
               for var in ParallelBackendBase.MAX_NUM_THREADS_VARS}
        if self._payload is None:
            self._payload = self._pool_payload()
        g = self.guard
        initargs = (os.getpid(), self._payload, None if g is None else str(g.folder),
                    0.0 if g is None else g.limit, self.cache_mb)
        pool = ProcessPoolExecutor(max_workers=self.n_jobs - 1, initializer=pool_init,
                                   initargs=initargs, env=env)
        for f in [pool.submit(warm) for _ in range(self.n_jobs - 1)]:
            f.result()
        return pool

    def _start_pool(self) -> None:
        try:
            pool = self._new_pool()
            with self._lock:
                if self._closed:  # the job's tasks were done while the pool started
                    pool.shutdown(wait=False, kill_workers=True)
                    return
                self._pool = pool
            self.ready.set()
        except Exception as e:  # noqa: BLE001 - e.g. no /dev/shm for loky's semaphores
            if self._closed:  # the job ended meanwhile: nothing to say
                return
            log.warning("could not start the pool's processes (%s: %s); the worker fits "
                        "every task itself", type(e).__name__, e)
            self.start_error = e
            self.ready.set()

    def close(self) -> None:
        """Once the job's last task is in: stop the pool's processes (without waiting for
        them, nor for a pool still starting: it stops itself once up) and remove the
        memory-mapped data. Closing twice is harmless."""
        with self._lock:
            self._closed = True
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False, kill_workers=True)
        if self.scratch is not None:
            shutil.rmtree(self.scratch, ignore_errors=True)

    # --- a stream ----------------------------------------------------------------------------

    def _worth_a_pool(self, done: int, later: float, left: int | None) -> bool:
        """Start the pool once ~1 s of fits was done alone, or once the tasks left would take
        longer than the pool's start at the rate of the ``done`` fits but the first (often
        slower: caches, lazy imports); ``later`` is those fits' seconds."""
        if self.inline_seconds >= INLINE_SECONDS:
            return True
        return left is not None and done >= 2 and later / (done - 1) * left >= POOL_WORTH_SECONDS

    def _batch(self, st: TaskStream) -> int:
        """Tasks per batch: ~BATCH_SECONDS of them at the rate seen, fewer near the end
        (so that no process is left with a long batch while the others idle)."""
        if not self._tasks_seen:
            return 1
        n = int(BATCH_SECONDS / max(self._seconds_seen / self._tasks_seen, 1e-6))
        if st.left is not None:
            n = min(n, st.left // (4 * self.n_jobs))
        return max(1, min(n, MAX_BATCH))

    def _add_feeder(self, st: TaskStream) -> None:
        """Start ``st``'s pool feeder (it waits for the pool, then hands it tasks)."""
        if st.fed or self.n_jobs == 1:
            return
        st.fed = True
        st.producers += 1
        threading.Thread(target=self._feed, args=(st,), name="pool-feed", daemon=True).start()

    def _fit(self, st: TaskStream, t: Task) -> Iterator[Outcome]:
        """One task in this process, its outcomes as each is scored (a chain's links one by
        one); until the pool runs, decide whether to start it."""
        record = self.guard.record if self.guard is not None else None
        if record is not None:
            record.start(t.tag)
        try:
            yield from self._fit_here(st, t)
        finally:
            if record is not None:
                record.end()

    def _fit_here(self, st: TaskStream, t: Task) -> Iterator[Outcome]:
        """The task's outcomes; until the pool is fed, each fit (a chain's link: a chain can
        be long) counts towards starting it."""
        last = time.perf_counter()
        record = self.guard.record if self.guard is not None else None
        for outcome in run_task(st.template, t, self.X, self.y, self.splits, st.scoring,
                                record, self.cache):
            if not st.fed:
                now = time.perf_counter()
                took, last = now - last, now
                st.later += took if st.done else 0.0
                st.done += 1
                self.inline_seconds += took
                if self.n_jobs > 1 and self._worth_a_pool(st.done, st.later, st.left):
                    self.start_pool()
                    self._add_feeder(st)
            yield outcome
            last = time.perf_counter()  # the consumer's time between outcomes is not a fit's

    def _inline(self, st: TaskStream) -> None:
        """The worker's own fits, in a thread beside the pool's feeder.

        They share the cores with the pool, so they get the BLAS/OpenMP threads joblib gives
        its own workers (OpenMP's limit is per thread: it is set here, in the thread that
        fits). The last refit, once every task is in, runs with all of them again.
        """
        try:
            with threadpool_limits(limits=self.threads):
                while batch := st.take():
                    for outcome in self._fit(st, batch[0]):
                        st.out.put(outcome)
        except BaseException as e:  # noqa: BLE001 - raised by the stream
            st.out.put(e)
        finally:
            st.out.put(END)

    def _feed(self, st: TaskStream) -> None:
        """Keep each pool process busy with a batch and the next one queued; when a pool
        process dies, learn from the fit records what it was fitting, and go on with a new
        pool."""
        try:
            while not self.ready.wait(0.01):
                if st.exhausted:
                    return
            if self.start_error is not None:  # the worker's own thread does every task
                return
            while (pool := self._pool) is not None:
                lost = self._feed_pool(st, pool)
                if lost is None:
                    return
                assert self.guard is not None  # (a death without a guard raised)
                pool_deaths.after_death(self.guard, st, *lost)
                if not self._restart_pool(pool):
                    return
        except BaseException as e:  # noqa: BLE001 - e.g. the pool could not restart
            st.out.put(e)
        finally:
            st.out.put(END)

    def _feed_pool(self, st: TaskStream, pool: ProcessPoolExecutor
                   ) -> tuple[list[Task], str] | None:
        """Feed ``pool`` until the stream is done (None), or until one of its processes
        died: then the tasks in flight, less the links they reported, and loky's message.

        A batch with a chain or a run says its links in a file as each is scored
        (:mod:`searchd.worker.linkstream`), read here every ``LINK_POLL`` seconds: each
        link is recorded (and checkpointed) as it arrives, not when its chain ends."""
        inflight: dict[Future[list[Outcome]], tuple[list[Task], linkstream.Reader | None]] = {}

        def submit() -> None:
            if batch := st.take(self._batch(st)):
                reader = self._reader(batch)
                path = None if reader is None else str(reader.path)
                inflight[pool.submit(evaluate_batch, st.template, st.scoring, batch,
                                     path)] = (batch, reader)

        for _ in range(2 * (self.n_jobs - 1)):
            submit()
        while inflight:
            polling = any(r is not None for _, r in inflight.values())
            done, _ = wait(inflight, timeout=LINK_POLL if polling else None,
                           return_when=FIRST_COMPLETED)
            for _, reader in inflight.values():
                for outcome in reader.read() if reader is not None else ():
                    st.out.put(outcome)
            for f in done:
                try:
                    outcomes = f.result()
                except BrokenProcessPool as e:
                    if self.guard is None or self.guard.stopping:
                        raise
                    return pool_deaths.lost(st, inflight.values()), str(e)
                batch, reader = inflight.pop(f)
                if reader is not None:
                    reader.remove()
                for outcome in outcomes[reader.count if reader is not None else 0:]:
                    st.out.put(outcome)
                submit()
        return None

    def _reader(self, batch: list[Task]) -> linkstream.Reader | None:
        """Where a batch with a chain or a run says its links (None: nowhere to)."""
        if self.scratch is None or not any(t.links for t in batch):
            return None
        self.scratch.mkdir(mode=0o700, exist_ok=True)
        return linkstream.Reader(self.scratch / f"{linkstream.PREFIX}{uuid.uuid4().hex}.jsonl")

    def _restart_pool(self, broken: ProcessPoolExecutor) -> bool:
        """A new pool in place of ``broken``; False when the runner closed meanwhile."""
        broken.shutdown(wait=False, kill_workers=True)
        log.info("starting new pool processes")
        pool = self._new_pool()
        with self._lock:
            if self._closed:
                pool.shutdown(wait=False, kill_workers=True)
                return False
            self._pool = pool
        return True

    def stream(self, template: Any, tasks: Iterable[Task], scoring: Scoring,
               count: int | None = None) -> Iterator[Outcome]:
        """Evaluate ``tasks`` (``count`` of them, if known), yielding as each finishes.

        Until the pool is needed the worker fits in this thread, with no hand-over between
        threads (a small job runs exactly so); from then on its fits run in a thread, so
        that the pool's results are recorded as they come, not after a long fit.
        """
        st = TaskStream(template, scoring, tasks, count)
        if self.starter is not None:  # an earlier model type started the pool
            self._add_feeder(st)
        try:
            while not st.fed:
                batch = st.take()
                if not batch:
                    return
                for outcome in self._limited(self._fit(st, batch[0])):
                    yield self._record(outcome)
            st.producers += 1
            threading.Thread(target=self._inline, args=(st,), name="fits", daemon=True).start()
            ended = 0
            while ended < st.producers:
                item = st.out.get()
                if item is END:
                    ended += 1
                elif isinstance(item, BaseException):
                    raise item
                else:
                    yield self._record(item)
        finally:
            st.close()  # an error, or the consumer stopped: take no more tasks

    def _limited(self, outcomes: Iterator[Outcome]) -> Iterator[Outcome]:
        """``outcomes``, each computed with the BLAS/OpenMP threads every process of the
        job gets when n_jobs > 1, as ``GridSearchCV(n_jobs)``'s workers get them: a fit's
        result can depend on its thread count (k-NN's neighbours at tied distances), so
        every fit gets the same count, whether the pool is up yet or not (the limits are
        set around each step only: the consumer's code between outcomes runs unlimited)."""
        if self.n_jobs == 1:
            yield from outcomes
            return
        if self._threadpools is None:
            self._threadpools = ThreadpoolController()
        while True:
            with self._threadpools.limit(limits=self.threads):
                outcome = next(outcomes, None)
            if outcome is None:
                return
            yield outcome

    def _record(self, outcome: Outcome) -> Outcome:
        self._tasks_seen += 1
        self._seconds_seen += outcome.seconds
        return outcome
