"""The job inside its worker: prepare and resume, the loop over model types, flushes.

For each model type, in the job file's order, the worker asks the type's search strategy
for candidates batch by batch (:mod:`searchd.worker.strategy`), hands the batch's pending
(candidate, fold) tasks to the job's runner longest first (:mod:`searchd.worker.taskplan`:
halving subsamples, warm-start chains, shared preprocessing), records every outcome as it
arrives, and refits the type's best while the next type's tasks already run
(:mod:`searchd.worker.refit`). A control thread flushes the checkpoint on time, reports
progress and honours a stop request, whatever the fits do.
"""

from __future__ import annotations

import errno
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

from searchd import lifeline as guard
from searchd import protocol
from searchd.errors import SearchdError
from searchd.jobs.context import type_version
from searchd.jobs.folder import frozen_spec
from searchd.jobs.limits import JobLimits
from searchd.jobs.messages import brief
from searchd.protocol import Exit
from searchd.settings import Settings
from searchd.state.checkpoint import ResultsCheckpoint, Snapshot
from searchd.state.files import open_private_append
from searchd.state.results import DONE, RUNNING, ModelResults
from searchd.state.signing import load_key
from searchd.state.store import CheckpointStore
from searchd.worker import chains, screening, taskplan
from searchd.worker.dask_runner import cluster_address
from searchd.worker.data import Dataset, load_dataset
from searchd.worker.estimators import build_candidate, check_model, is_classification
from searchd.worker.evaluate import Outcome, Task
from searchd.worker.events import Events
from searchd.worker.plan import Scoring, Split, add_batch, empty_results, splits
from searchd.worker.poison import TIMEOUT_EXIT, FitGuard, FitRecord, task_tag
from searchd.worker.refit import Refit
from searchd.worker.reporting import ReportKeeper
from searchd.worker.resume import (
    Start,
    model_matches,
    reuse_event,
    settle,
    settle_from_model,
    start,
    unchanged_done,
)
from searchd.worker.runner import Runner, job_n_jobs, make_runner
from searchd.worker.strategy import Strategy, strategy_for

log = logging.getLogger("searchd.worker")

FITS_LOG = "fits.log"
POOL_DATA = "pool-data"  # a big X and y, memory-mapped by the pool's processes


class JobRun:
    """The state of one job inside its worker, shared by the main, control and refit threads
    (``lock`` guards the results)."""

    def __init__(self, job_dir: Path, job_id: str, settings: Settings, events: Events) -> None:
        self.dir, self.job_id = job_dir, job_id
        self.n_jobs, self.interval = settings.n_jobs, settings.checkpoint_interval
        self.allow = settings.allow_modules
        self.data_dirs = settings.data_dirs  #: where csv:/npz: files may be, besides jobs_dir
        self.max_data_bytes = settings.max_data_bytes
        self.events = events
        #: fit records, strikes against tasks whose process died, the fit time limit
        self.guard = FitGuard(job_dir, settings.max_fit_seconds)
        self.max_memory = settings.max_memory  #: MiB for the job's processes; 0 = no cap
        self.cache_mb = settings.preprocess_cache_mb  #: shared preprocessing per process
        #: prepare is done; until then a stop flushes nothing (the checkpoint on disk holds
        #: everything, a snapshot of a half-prepared job would not)
        self.prepared = False
        self.lock = threading.RLock()
        self.stop_requested = False
        self.dispatched = False
        self.dirty = False
        self.last_flush = time.monotonic()
        self.flush_failures = 0
        self.store = CheckpointStore(job_dir, load_key(job_dir.parent), job_id)
        self.ckpt = ResultsCheckpoint(self.store)
        self.spec = frozen_spec(job_dir, settings.jobs_dir, job_id, JobLimits.of(settings))
        # before the data loads: a job asking for a cluster the daemon lacks is invalid
        self.address = cluster_address(self.spec.search.backend, settings.dask_scheduler,
                                       self.spec.path)
        self.runner: Runner | None = None
        self.models: dict[str, ModelResults] = {}
        self.strategies: dict[str, Strategy] = {}
        #: the rows of each type's batch in hand (its first, from ``prepare``)
        self.batches: dict[str, list[int]] = {}
        #: each type's results in the checkpoint, adopted by key as rows are added
        self.resumed: dict[str, ModelResults] = {}
        #: the checkpoint as this spec found it, with every result it may reuse
        self.began: Start | None = None
        self.fits_fd = open_private_append(job_dir / FITS_LOG)  # never through a link
        self.data: Dataset | None = None
        self.splits: list[Split] = []
        #: state/<job>/report.html, drawn in a thread of its own
        self.reports = ReportKeeper(job_dir.parent, job_id,
                                    settings.publish_root() if settings.publish else None,
                                    draw=settings.report)

    # --- checkpoints ---------------------------------------------------------------------------

    def snapshot(self) -> Snapshot:
        assert self.data is not None
        began = self.began
        return Snapshot(job=self.job_id, spec_digest=self.spec.digest,
                        data_digest=self.data.digest, splits=self.splits, models=self.models,
                        saved_at=time.time(),
                        kept=began.pool.kept(self.models.values()) if began else {},
                        context=began.context if began else None,
                        type_versions={m.name: type_version(m) for m in self.spec.models})

    def flush(self, force: bool = False) -> bool:
        """Write the results checkpoint if anything changed; False when the disk refused."""
        with self.lock:
            if not (self.dirty or force):
                return True
            try:
                self.ckpt.flush(self.snapshot, compact=force)
            except OSError as e:
                self.flush_failures += 1
                reason = f"{errno.errorcode.get(e.errno or 0, 'error')}: {e.strerror or e}"
                log.error("%s: checkpoint write failed (%s); keeping the last good one, "
                          "retrying", self.job_id, reason)
                self.events.send(protocol.Disk(error=f"checkpoint write failed: {reason}"))
                return False
            if self.flush_failures:
                log.info("%s: checkpoint writes work again", self.job_id)
                self.events.send(protocol.Disk(error=None))
            self.flush_failures = 0
            self.dirty = False
            self.last_flush = time.monotonic()
            return True

    def flush_until_written(self) -> None:
        """A forced flush (a new base), retried while the disk refuses."""
        while not self.flush(force=True):
            time.sleep(min(60.0, self.interval))

    def progress(self, running: str | None = None) -> None:
        if self.runner is None:  # not prepared yet: nothing to report
            return
        with self.lock:
            models = {name: m.summary() for name, m in self.models.items()}
        self.events.send(protocol.Progress(
            running=running, models=models, backend=self.runner.backend,
            processes=self.runner.processes, cluster_workers=self.runner.workers))

    def control_loop(self) -> None:
        """Flush on time, report progress, and honour a stop request, whatever the fits do."""
        last_report = 0.0
        while True:
            time.sleep(0.1)
            now = time.monotonic()
            if self.stop_requested:
                log.info("%s: stopping: %s", self.job_id, "flushing the checkpoint"
                         if self.prepared else "nothing to flush yet")
                self.guard.stopping = True  # the pool's deaths from here on are ours
                if self.prepared:
                    # held until the exit: every fit recorded (and so in fits.log) is in
                    # this flush, and none is recorded after it: a stop loses only fits in flight
                    self.lock.acquire()
                    self.flush()
                guard.end_children()
                self.guard.forget()
                if self.prepared:  # (preparing holds the lock while it makes the rows)
                    self.progress()  # the figures as flushed, for the supervisor's summary
                self.events.send(protocol.Stopped())
                os._exit(Exit.STOPPED)
            record = self.guard.record
            if self.guard.limit and record is not None and \
                    record.running_for() > self.guard.limit:
                self._fit_too_long(record)
            if not self.prepared:
                continue
            backoff = min(60.0, self.interval * 2 ** self.flush_failures)
            if self.dirty and now - self.last_flush >= (backoff if self.flush_failures
                                                         else self.interval):
                if self.flush():
                    self.reports.tick(now)
            if now - last_report >= 1.0:
                last_report = now
                self.progress()

    def _fit_too_long(self, record: FitRecord) -> None:
        """A fit in this process ran past max_fit_seconds: a thread cannot be stopped, so
        the worker marks its record, keeps its results and exits; the next worker records
        that task as failed."""
        log.error("%s: fit %s ran past max_fit_seconds (%g s) in the worker; restarting the "
                  "worker to stop it (the fit is recorded as failed)", self.job_id,
                  record.tag, self.guard.limit)
        record.timed_out()
        self.guard.stopping = True
        if self.prepared:
            self.flush()
        guard.end_children()
        os._exit(TIMEOUT_EXIT)

    # --- the job -------------------------------------------------------------------------------

    def prepare(self) -> dict[str, Any]:
        """Check every model, load the data, resume from the checkpoint, take each type's
        first batch (so status knows its fits); returns the estimator templates."""
        self.guard.start()
        templates = {m.name: check_model(self.spec, m, self.allow) for m in self.spec.models}
        classification = is_classification(self.spec, self.allow)
        if self.max_memory:
            # the worker and its pool processes share the cap (a cluster's are its own)
            share = 1 if self.address else job_n_jobs(self.spec, self.n_jobs)
            guard.limit_address_space(self.max_memory * 2**20 // share)
        self.data = data = load_dataset(self.spec, classification, data_dirs=self.data_dirs,
                                        state_dir=self.dir.parent,
                                        max_bytes=self.max_data_bytes)
        began = self.began = start(self.store, self.spec, data.digest)
        old = began.old
        # no splits in a checkpoint whose splits file was lost: they are made again, the same
        self.splits = old.splits if old and old.splits else splits(
            self.spec, data.X_train, data.y_train, classification)
        self.runner = make_runner(self.spec, self.job_id, self.n_jobs, self.address,
                                  data.X_train, data.y_train, self.splits, self.dir / POOL_DATA,
                                  self.guard, self.cache_mb)
        for m in self.spec.models:
            res = self.models[m.name] = empty_results(self.spec, m, data.digest)
            prev = began.previous(m.name)
            if prev is not None and unchanged_done(began, self.spec, m.name, res):
                res = self.models[m.name] = prev  # done as it was: best, model and all
            pooled = began.pool.get(res.spec_key)  # every result of this estimator
            if pooled is not None:
                self.resumed[m.name] = pooled
            self.strategies[m.name] = strategy_for(self.spec, m, templates[m.name],
                                                   data.y_train, self.resumed.get(m.name))
            self.batches[m.name] = self._next_batch(m.name) or []
            if res.state != DONE:
                settle(res, prev)
            if res.state != DONE and res.fits_done == res.fits_total:  # a type put back
                settle_from_model(res, self.store.read(f"model-{m.name}")[0])
            if res.fits_done:
                log.info("%s: %s: resumed %d of %d fits from the checkpoint",
                         self.job_id, m.name, res.fits_done, res.fits_total)
            if res.state == DONE and res.refit_error is None and not model_matches(
                    self.store.read(f"model-{m.name}")[0], res):
                res.state = RUNNING  # results are done but the refitted model was lost
        if began.refused and old is None:
            log.warning("%s: no good checkpoint; starting from scratch", self.job_id)
        reuse = reuse_event(began, self.models)
        if reuse is not None:
            log.info("%s: %s%d fits reused, %d candidates new (%d fits)", self.job_id,
                     f"started over ({reuse.why}); " if reuse.why else "", reuse.reused,
                     reuse.new_candidates, reuse.new_fits)
            self.events.send(reuse)
        self.dirty = True
        return templates

    def _next_batch(self, name: str) -> list[int] | None:
        """The rows of the type's next batch (None: its search is done), adopting what the
        checkpoint holds for the rows it adds."""
        res = self.models[name]
        with self.lock:  # the strategy reads the results a flush may be pickling
            batch = self.strategies[name].next_batch(res)
            if batch is None:
                return None
            before = len(res.keys)
            rows = add_batch(res, batch)
            if len(res.keys) > before:
                old = self.resumed.get(name)
                if old is not None:
                    res.adopt(old, range(before, len(res.keys)))
                self.ckpt.note_rows()
                if self.began is not None:
                    self.began.pool.invalidate()
                self.dirty = True
        return rows

    def run_model(self, name: str, template: Any) -> None:
        """Evaluate the type's batches until its strategy is done."""
        res = self.models[name]
        scoring = Scoring(self.spec, template)
        with self.lock:
            res.state = RUNNING
        self.progress(running=name)
        rows: list[int] | None = self.batches.pop(name, [])
        while rows is not None:
            self._evaluate(name, template, scoring, rows)
            rows = self._next_batch(name)

    def _evaluate(self, name: str, template: Any, scoring: Scoring, rows: list[int]) -> None:
        """The pending tasks of ``rows``, longest first, each outcome recorded as it comes."""
        res = self.models[name]
        assert self.runner is not None
        pending = res.pending(rows)
        if not pending:
            return
        #: tasks whose process died with them (run alone below), tasks handed out by key
        suspects: list[Task] = []
        handed: dict[tuple[int, int], Task] = {}
        where = f"{self.spec.path}: models.{name}.grid"
        built = {i: build_candidate(res.params[i], self.spec, self.allow, where)
                 for i in {i for i, _ in pending}}
        tasks = taskplan.tasks(self, name, template, res, pending, built)
        screened = screening.screen(self, name, res, tasks, suspects, handed)
        if not self.dispatched:
            self.dispatched = True
            self.events.send(protocol.Dispatching())  # the search proper starts now
        strikes = self.guard.strikes
        if any(strikes.deaths(task_tag(name, res.keys[i], f)) for i, f in pending):
            # Rare: a process died with some of these tasks in flight. They run first, each
            # alone, so that a poison fit's second worker death comes right after its first
            # (the supervisor fails a job after 3 deaths in a row without progress).
            rest = list(screened)
            screening.alone(self, name, template, scoring, res, suspects)
            suspects.clear()
            screened = iter(rest)
        for o in self.runner.stream(template, screened, scoring, count=len(pending)):
            self.record(name, res, o)
        screening.alone(self, name, template, scoring, res, suspects + [
            u for t in handed.values() for u in chains.unchain(t) if not res.done[u.i, u.fold]])

    def record(self, name: str, res: ModelResults, o: Outcome) -> None:
        with self.lock:
            res.record(o.i, o.fold, o.scores, o.fit_time, o.score_time, o.error)
            self.ckpt.note((name, res.keys[o.i], o.fold, o.scores, o.fit_time,
                            o.score_time, o.error))
            self.dirty = True
            os.write(self.fits_fd, b".")  # under the lock: a stop's flush counts it
        if o.error is not None:
            log.warning("%s: %s: candidate %s fold %d failed: %s", self.job_id, name,
                        brief(res.params[o.i]), o.fold, o.error)

    def run(self) -> int:
        # the control thread first: a stop is honoured while the job prepares, too
        threading.Thread(target=self.control_loop, name="control", daemon=True).start()
        templates = self.prepare()
        assert self.runner is not None
        self.flush()
        self.prepared = True
        refit: Refit | None = None
        todo = [m for m in self.spec.models if self.models[m.name].state != DONE]
        try:
            for m in todo:
                self.run_model(m.name, templates[m.name])
                # The best of this type is refitted while the next type's tasks already
                # run: no core idles through the refit (GridSearchCV leaves one idle).
                if refit is not None:
                    refit.join()
                if m is todo[-1]:
                    self.runner.close()  # every task is in: the last refit has the machine
                refit = Refit(self, m.name, templates[m.name])
            if refit is not None:
                refit.join()
        except SearchdError:  # expected (e.g. the Dask cluster went away): main reports it
            self.flush()
            raise
        except Exception:
            if self.stop_requested:
                # the control thread is ending the pool and exits for us (Exit.STOPPED)
                threading.Event().wait()
            # e.g. a joblib worker was killed: keep every result so far, then die loudly
            log.exception("%s: worker failed; saving the results so far", self.job_id)
            self.flush()
            raise
        self.progress()
        self.runner.close()
        # done first: the final report (a second or more of matplotlib) is drawn after the
        # job's finish is recorded, so it costs the job no time
        self.events.send(protocol.Done())
        self.reports.finish()
        return Exit.DONE
