"""The worker: one process per running job, evaluating (candidate, fold) tasks.

Started by the supervisor as ``python -m searchd.worker``. It loads the frozen
spec and the data, resumes from the job's checkpoint, evaluates tasks itself and in
``n_jobs - 1`` loky processes (``execute.LocalRunner``; clone → set_params → fit →
score, all public scikit-learn API), records each result as it arrives, flushes a
signed checkpoint at least every ``checkpoint_interval`` seconds and at the end of each
model type, and reports progress to the supervisor as JSON lines on a pipe.
"""

from __future__ import annotations

import argparse
import errno
import logging
import os
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.base import clone

from searchd import lifeline as guard
from searchd import protocol
from searchd.errors import CheckpointError, DataError, JobSpecError, SearchdError, StateLockedError
from searchd.jobs.folder import frozen_spec
from searchd.protocol import Exit
from searchd.settings import Settings
from searchd.state.checkpoint import BASE as RESULTS
from searchd.state.checkpoint import ResultsCheckpoint, read_results
from searchd.state.results import DONE, RUNNING, ModelResults
from searchd.state.store import (
    CheckpointStore,
    clean_temp_files,
    exclusive,
    load_key,
    open_private_append,
)
from searchd.worker.dask_runner import ClusterUnavailableError, DaskCluster, cluster_address
from searchd.worker.data import Dataset, load_dataset
from searchd.worker.estimators import build_candidate, check_model, is_classification
from searchd.worker.execute import LocalRunner, Task, longest_first
from searchd.worker.plan import Scoring, content_key, new_results, splits

log = logging.getLogger("searchd.worker")

FITS_LOG = "fits.log"
POOL_DATA = "pool-data"  # a big X and y, memory-mapped by the pool's processes


class Events:
    """Event lines to the supervisor; a broken pipe means it is gone, so we stop."""

    def __init__(self, fd: int | None) -> None:
        self.fd = fd
        self.lock = threading.Lock()

    def send(self, event: protocol.Event) -> None:
        if self.fd is None:
            return
        line = protocol.encode(event)
        with self.lock:
            try:
                os.write(self.fd, line)
            except BrokenPipeError:
                log.error("supervisor is gone; exiting")
                os._exit(Exit.STOPPED)


class JobRun:
    """The state of one job inside its worker, shared by the main and the flush thread."""

    def __init__(self, job_dir: Path, jobs_dir: Path, job_id: str, n_jobs: int,
                 interval: float, allow: tuple[str, ...], max_candidates: int,
                 events: Events, dask: str | None = None,
                 data_dirs: tuple[Path, ...] = ()) -> None:
        self.dir, self.job_id = job_dir, job_id
        self.data_dirs = data_dirs  #: where csv:/npz: files may be, besides jobs_dir
        self.n_jobs, self.interval, self.allow = n_jobs, interval, allow
        self.events = events
        self.lock = threading.RLock()
        self.stop_requested = False
        self.dispatched = False
        self.dirty = False
        self.last_flush = time.monotonic()
        self.flush_failures = 0
        self.store = CheckpointStore(job_dir, load_key(job_dir.parent), job_id)
        self.ckpt = ResultsCheckpoint(self.store)
        self.runner: LocalRunner | None = None
        self.spec = frozen_spec(job_dir, jobs_dir, job_id, max_candidates)
        address = cluster_address(self.spec.search.backend, dask, self.spec.path)
        self.cluster = DaskCluster(address, job_id) if address else None
        self.models: dict[str, ModelResults] = {}
        self.fits_fd = open_private_append(job_dir / FITS_LOG)  # never through a link
        self.data: Dataset | None = None
        self.splits: list[tuple[np.ndarray, np.ndarray]] = []

    # --- checkpoints ---------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        assert self.data is not None
        return {"job": self.job_id, "spec_digest": self.spec.digest,
                "data_digest": self.data.digest, "splits": self.splits,
                "models": self.models, "saved_at": time.time()}

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

    def progress(self, running: str | None = None) -> None:
        with self.lock:
            models = {name: m.summary() for name, m in self.models.items()}
        self.events.send(protocol.Progress(
            running=running, models=models, backend="local" if self.cluster is None else "dask",
            processes=None if self.cluster is not None else
            (1 if self.runner is None else self.runner.processes),
            cluster_workers=None if self.cluster is None else self.cluster.workers))

    def control_loop(self) -> None:
        """Flush on time, report progress, and honour a stop request, whatever the fits do."""
        last_report = 0.0
        while True:
            time.sleep(0.1)
            now = time.monotonic()
            if self.stop_requested:
                log.info("%s: stopping: flushing the checkpoint", self.job_id)
                self.flush()
                guard.end_children()
                self.progress()  # the figures as flushed, for the supervisor's summary
                self.events.send(protocol.Stopped())
                os._exit(Exit.STOPPED)
            backoff = min(60.0, self.interval * 2 ** self.flush_failures)
            if self.dirty and now - self.last_flush >= (backoff if self.flush_failures
                                                         else self.interval):
                self.flush()
            if now - last_report >= 1.0:
                last_report = now
                self.progress()

    # --- the job -------------------------------------------------------------------------------

    def prepare(self) -> dict[str, Any]:
        """Check every model, load the data, resume from the checkpoint; returns templates."""
        templates = {m.name: check_model(self.spec, m, self.allow) for m in self.spec.models}
        classification = is_classification(self.spec, self.allow)
        self.data = load_dataset(self.spec, classification, data_dirs=self.data_dirs,
                                 state_dir=self.dir.parent)
        old, refused = read_results(self.store, quarantine=True)
        if old is not None and old.get("data_digest") != self.data.digest:
            log.warning("%s: the data changed since the checkpoint; starting over (the old "
                        "checkpoint is kept aside)", self.job_id)
            self.store.quarantine(self.store.path(RESULTS), "data changed")
            old = None
        self.splits = old["splits"] if old else splits(
            self.spec, self.data.X_train, self.data.y_train, classification)
        for m in self.spec.models:
            res = new_results(self.spec, m, self.data.digest)
            if old and m.name in old["models"]:
                n = res.adopt(old["models"][m.name])
                if n:
                    log.info("%s: %s: resumed %d of %d fits from the checkpoint",
                             self.job_id, m.name, n, res.fits_total)
            if res.state == DONE and res.refit_error is None and \
                    self.store.read(f"model-{m.name}")[0] is None:
                res.state = RUNNING  # results are done but the refitted model was lost
            self.models[m.name] = res
        if refused and old is None:
            log.warning("%s: no good checkpoint; starting from scratch", self.job_id)
        self.dirty = True
        return templates

    def run_model(self, name: str, template: Any) -> None:
        res = self.models[name]
        assert self.data is not None
        X, y = self.data.X_train, self.data.y_train
        scoring = Scoring(self.spec, template)
        pending = res.pending()
        with self.lock:
            res.state = RUNNING
        self.progress(running=name)
        if pending:
            where = f"{self.spec.path}: models.{name}.grid"
            built = {i: build_candidate(res.params[i], self.spec, self.allow, where)
                     for i in {i for i, _ in pending}}
            n_jobs = self.spec.search.n_jobs or self.n_jobs
            if self.n_jobs > 0 and n_jobs > 0:
                n_jobs = min(n_jobs, self.n_jobs)
            n_jobs = min(n_jobs, os.cpu_count() or 1)  # a job cannot ask for 10,000 processes
            order = longest_first(pending, self._task_seconds(res))
            tasks = (Task(i, f, built[i]) for i, f in order)
            if not self.dispatched:
                self.dispatched = True
                self.events.send(protocol.Dispatching())  # the search proper starts now
            if self.cluster is not None:
                outcomes = self.cluster.stream(template, tasks, X, y, self.splits, scoring)
            else:
                if self.runner is None:
                    self.runner = LocalRunner(n_jobs, X, y, self.splits, self.dir / POOL_DATA)
                outcomes = self.runner.stream(template, tasks, scoring, count=len(pending))
            for i, f, scores, fit_time, score_time, error in outcomes:
                with self.lock:
                    res.record(i, f, scores, fit_time, score_time, error)
                    self.ckpt.note((name, res.keys[i], f, scores, fit_time, score_time, error))
                    self.dirty = True
                os.write(self.fits_fd, b".")
                if error is not None:
                    log.warning("%s: %s: candidate %s fold %d failed: %s", self.job_id, name,
                                res.params[i], f, error)

    def _task_seconds(self, res: ModelResults) -> Callable[[], np.ndarray]:
        def read() -> np.ndarray:
            with self.lock:
                return res.task_seconds()
        return read

    def finish_model(self, name: str, template: Any) -> None:
        """Pick the best candidate as GridSearchCV does, refit it on all training data."""
        res = self.models[name]
        assert self.data is not None
        with self.lock:  # a flush may pickle the results meanwhile
            best = res.finish()
        params = build_candidate(res.params[best], self.spec, self.allow, name)
        est = clone(template).set_params(**params)
        start = time.time()
        test_score = None
        try:
            est.fit(self.data.X_train, self.data.y_train)
            refit_time = time.time() - start
            if self.data.X_test is not None:
                scored = Scoring(self.spec, template)(est, self.data.X_test, self.data.y_test)
                test_score = {k: float(v) for k, v in scored.items()}
        except Exception as e:  # noqa: BLE001 - e.g. every candidate fails: say so, go on
            with self.lock:
                res.refit_error = f"refit of the best candidate failed: {type(e).__name__}: {e}"
                res.state = DONE
                self.dirty = True
            log.error("%s: %s: %s", self.job_id, name, res.refit_error)
            while not self.flush(force=True):
                time.sleep(min(60.0, self.interval))
            self.progress()
            return
        model_ckpt = {"name": name, "estimator": est, "params": res.params[best],
                      "best_score": res.best_score, "test_score": test_score,
                      "key": content_key(res.params[best])}
        while True:
            try:
                self.store.write(f"model-{name}", model_ckpt)
                break
            except OSError as e:
                self.events.send(protocol.Disk(error=f"model checkpoint write failed: {e}"))
                log.error("%s: %s: model checkpoint write failed (%s); retrying", self.job_id,
                          name, e)
                time.sleep(min(60.0, self.interval))
        with self.lock:
            res.test_score, res.refit_time, res.state = test_score, refit_time, DONE
            self.dirty = True
        while not self.flush(force=True):
            time.sleep(min(60.0, self.interval))
        log.info("%s: %s done: best %s = %.6g with %s", self.job_id, name, res.refit,
                 res.best_score if res.best_score is not None else float("nan"),
                 res.params[best])
        self.progress()

    def run(self) -> int:
        templates = self.prepare()
        self.flush()
        threading.Thread(target=self.control_loop, name="control", daemon=True).start()
        refit: _Refit | None = None
        todo = [m for m in self.spec.models if self.models[m.name].state != DONE]
        try:
            for m in todo:
                self.run_model(m.name, templates[m.name])
                # The best of this type is refitted while the next type's tasks already
                # run: no core idles through the refit (GridSearchCV leaves one idle).
                if refit is not None:
                    refit.join()
                if m is todo[-1] and self.runner is not None:
                    self.runner.close()  # every task is in: the last refit has the machine
                refit = _Refit(self, m.name, templates[m.name])
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
        if self.cluster is not None:
            self.cluster.close()
        if self.runner is not None:
            self.runner.close()
        self.events.send(protocol.Done())
        return Exit.DONE


class _Refit:
    """``JobRun.finish_model`` in a thread; ``join`` waits and re-raises what it raised."""

    def __init__(self, run: JobRun, name: str, template: Any) -> None:
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._target, args=(run, name, template),
                                       name=f"refit-{name}", daemon=True)
        self.thread.start()

    def _target(self, run: JobRun, name: str, template: Any) -> None:
        try:
            run.finish_model(name, template)
        except BaseException as e:  # noqa: BLE001 - handed to the main thread by join()
            self.error = e

    def join(self) -> None:
        self.thread.join()
        if self.error is not None:
            raise self.error


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="searchd.worker")
    p.add_argument("--job", required=True)
    p.add_argument("--events-fd", type=int)
    p.add_argument("--settings", type=protocol.decode_settings, required=True,
                   help="the daemon's settings (protocol.encode_settings)")
    args = p.parse_args(argv)
    settings: Settings = args.settings
    # joblib's resource tracker outlives this process by a moment on purpose: it removes the
    # semaphores and memory maps loky leaves at a fast exit. That is not worth a warning in
    # the daemon's log (the tracker inherits this environment when the pool starts).
    os.environ["PYTHONWARNINGS"] = ",".join(filter(None, [
        os.environ.get("PYTHONWARNINGS"),
        "ignore::UserWarning:joblib.externals.loky.backend.resource_tracker"]))
    logging.basicConfig(level=settings.log_level, stream=sys.stderr,
                        format=os.environ.get("SEARCHD_LOG_FORMAT", "%(name)s: %(message)s"))
    guard.die_with_parent()
    events = Events(args.events_fd)
    job_dir = settings.job_dir(args.job)
    run: JobRun | None = None

    def on_term(signum: int, frame: object) -> None:
        if run is not None:
            run.stop_requested = True  # the control thread flushes and exits
        else:
            raise SystemExit(Exit.STOPPED)

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the supervisor decides; Ctrl-C hits the group
    try:
        with exclusive(job_dir / "job.lock", f"job {args.job}"):
            clean_temp_files(job_dir)
            shutil.rmtree(job_dir / POOL_DATA, ignore_errors=True)  # a killed run's
            run = JobRun(job_dir, settings.jobs_dir, args.job, settings.n_jobs,
                         settings.checkpoint_interval, settings.allow_modules,
                         settings.max_candidates, events, settings.dask_scheduler,
                         data_dirs=settings.data_dirs)
            code = run.run()
        # Skip loky's leisurely teardown (~0.6 s): everything is flushed and reported.
        logging.shutdown()
        guard.end_children(timeout=1.0)
        os._exit(code)
    except (JobSpecError, DataError) as e:
        events.send(protocol.Invalid(error=str(e)))
        log.error("%s: invalid: %s", args.job, e)
        return Exit.INVALID
    except ClusterUnavailableError as e:
        if run is not None:
            run.flush()  # keep every result that came back before the cluster went away
        events.send(protocol.Cluster(error=str(e)))
        log.error("%s: %s; the job waits and retries", args.job, e)
        return Exit.CLUSTER
    except StateLockedError as e:
        log.error("%s", e)
        return Exit.LOCKED
    except (CheckpointError, SearchdError) as e:
        events.send(protocol.Failed(error=str(e)))
        log.error("%s: %s", args.job, e)
        return Exit.FAILED

