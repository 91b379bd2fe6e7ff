"""The refit of a model type's best candidate on the whole training set, in a thread.

``GridSearchCV(refit=True)`` refits once its search is over, with every core but one idle;
the worker refits the best of a type while the next type's tasks already run (see
``JobRun.run``), and saves the fitted model as the type's ``model-<name>`` checkpoint.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING, Any

from sklearn.base import clone

from searchd import protocol
from searchd.state.results import DONE
from searchd.worker.estimators import build_candidate
from searchd.worker.plan import Scoring, content_key

if TYPE_CHECKING:
    from searchd.worker.job import JobRun

log = logging.getLogger("searchd.worker")


def refit_best(run: JobRun, name: str, template: Any) -> None:
    """Pick the best candidate as GridSearchCV does, refit it on all training data, save it
    (retrying while the disk refuses) and flush the results with the type done."""
    res = run.models[name]
    data = run.data
    assert data is not None
    with run.lock:  # a flush may pickle the results meanwhile
        best = res.finish()
    params = build_candidate(res.params[best], run.spec, run.allow, name)
    est = clone(template).set_params(**params)
    start = time.time()
    test_score = None
    try:
        est.fit(data.X_train, data.y_train)
        refit_time = time.time() - start
        if data.X_test is not None:
            scored = Scoring(run.spec, template)(est, data.X_test, data.y_test)
            test_score = {k: float(v) for k, v in scored.items()}
    except Exception as e:  # noqa: BLE001 - e.g. every candidate fails: say so, go on
        with run.lock:
            res.refit_error = f"refit of the best candidate failed: {type(e).__name__}: {e}"
            res.state = DONE
            run.dirty = True
        log.error("%s: %s: %s", run.job_id, name, res.refit_error)
        run.flush_until_written()
        run.progress()
        return
    model_ckpt = {"name": name, "estimator": est, "params": res.params[best],
                  "best_score": res.best_score, "test_score": test_score,
                  "key": content_key(res.params[best]), "spec_key": res.spec_key}
    while True:
        try:
            run.store.write(f"model-{name}", model_ckpt)
            break
        except OSError as e:
            run.events.send(protocol.Disk(error=f"model checkpoint write failed: {e}"))
            log.error("%s: %s: model checkpoint write failed (%s); retrying", run.job_id,
                      name, e)
            time.sleep(min(60.0, run.interval))
    with run.lock:
        res.test_score, res.refit_time, res.state = test_score, refit_time, DONE
        run.dirty = True
    run.flush_until_written()
    run.reports.request()
    log.info("%s: %s done: best %s = %.6g with %s", run.job_id, name, res.refit,
             res.best_score if res.best_score is not None else float("nan"), res.params[best])
    run.progress()


class Refit:
    """``refit_best`` in a thread; ``join`` waits and re-raises what it raised."""

    def __init__(self, run: JobRun, name: str, template: Any) -> None:
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._target, args=(run, name, template),
                                       name=f"refit-{name}", daemon=True)
        self.thread.start()

    def _target(self, run: JobRun, name: str, template: Any) -> None:
        try:
            refit_best(run, name, template)
        except BaseException as e:  # noqa: BLE001 - handed to the main thread by join()
            self.error = e

    def join(self) -> None:
        self.thread.join()
        if self.error is not None:
            raise self.error
