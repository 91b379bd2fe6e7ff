"""The worker publishes its job's results for the daemon's group (``publish = true``).

Called by :class:`~searchd.worker.reporting.ReportKeeper` in its own thread, right after a
report is drawn: when a model type is done (its best is refitted), every few minutes while
a type runs, and at the job's end, so no fit waits for it. What it writes, and where, is
:mod:`searchd.state.published`: per type ``cv_results_`` as JSON and CSV and the best model
as a skops file, ``results.json`` (best candidates, hold-out scores, errors) and the
report. It reads the results through the read API (every checkpoint verified before it is
unpickled) and never copies a checkpoint, a pickle or the key. A model is serialised again
only when its checkpoint changed. A result that cannot be published is logged; it never
stops the job.
"""

from __future__ import annotations

import io
import logging
from pathlib import Path
from typing import Any

from searchd.errors import SearchdError
from searchd.state import published as pub
from searchd.state.read import JobResults, ModelSearch, job_store, load_results, read_checkpoint
from searchd.state.results import DONE

log = logging.getLogger(__name__)

REPORT = "report.html"  # searchd.report.REPORT (that package imports matplotlib's helpers)


def model_entry(m: ModelSearch, model_file: str | None) -> dict[str, Any]:
    """What ``results.json`` says about one model type (``show`` reads it)."""
    return {"state": m.state, "fits_done": m.fits_done, "fits_total": m.fits_total,
            "best_index": m.best_index_, "best_params": m.best_params_,
            "best_score": m.best_score_, "test_score": m.test_score_,
            "refit_time": m.refit_time_, "refit_error": m.refit_error,
            "errors": [[c, f, msg] for (c, f), msg in sorted(m.errors.items())],
            "n_candidates_": m.n_candidates_, "n_resources_": m.n_resources_,
            "n_iterations_": m.n_iterations_, "halving": m.halving, "model": model_file}


def cv_csv(cv: dict[str, Any]) -> bytes:
    import pandas as pd

    buf = io.StringIO()
    pd.DataFrame(cv).to_csv(buf, index=False)
    return buf.getvalue().encode()


class Publisher:
    def __init__(self, state_dir: Path, job_id: str, root: Path) -> None:
        self.state_dir, self.job_id, self.root = Path(state_dir), job_id, Path(root)
        #: model type → (mtime_ns, size) of the model checkpoint last published
        self._models: dict[str, tuple[int, int]] = {}
        self._said_no_skops = False
        self.written = 0

    def publish(self) -> bool:
        """Publish what the checkpoints hold now; False (and a log line) if that failed."""
        try:
            results = load_results(self.job_id, self.state_dir, with_estimators=False)
            self._publish(results)
        except (SearchdError, OSError, ValueError) as e:  # no results yet, a full disk, ...
            log.warning("%s: results not published in %s (%s)", self.job_id, self.root, e)
            return False
        self.written += 1
        return True

    def _publish(self, results: JobResults) -> None:
        folder = pub.job_folder(self.root, self.job_id)
        keep: set[str] = set()
        models: dict[str, Any] = {}
        for name, m in results.models.items():
            as_json, as_csv = pub.cv_files(name)
            pub.publish_file(folder, as_json, pub.to_json(m.cv_results_))
            pub.publish_file(folder, as_csv, cv_csv(m.cv_results_))
            keep |= {as_json, as_csv}
            model = self._model(folder, name, m)
            if model is not None:
                keep.add(model)
            models[name] = model_entry(m, model)
        pub.publish_file(folder, pub.RESULTS, pub.to_json(
            {"job": self.job_id, "best": results.best_name, "models": models}))
        report = self.state_dir / self.job_id / REPORT
        if report.is_file() and not report.is_symlink():
            pub.publish_file(folder, pub.REPORT, report.read_bytes())
        pub.remove_stale(folder, keep)

    def _model(self, folder: Path, name: str, m: ModelSearch) -> str | None:
        """The type's best model as ``<type>.skops`` (made again only when its checkpoint
        changed); None when there is none (not done, no skops, not serialisable)."""
        if m.state != DONE or m.refit_error:
            return None
        out = pub.model_file(name)
        store = job_store(self.state_dir, self.job_id)
        try:
            st = store.path(f"model-{name}").stat()
        except FileNotFoundError:
            return None
        stamp = (st.st_mtime_ns, st.st_size)
        if self._models.get(name) == stamp and (folder / out).is_file():
            return out
        try:
            import skops.io as sio
        except ImportError:
            if not self._said_no_skops:
                log.info("%s: skops is not installed: the best models are not published "
                         "(pip install 'searchd[skops]')", self.job_id)
                self._said_no_skops = True
            return None
        est = read_checkpoint(store, f"model-{name}")["estimator"]
        try:
            data = sio.dumps(est)
        except (TypeError, ValueError, NotImplementedError, AttributeError) as e:
            log.warning("%s: model type %s: skops cannot save it (%s); not published",
                        self.job_id, name, e)
            return None
        pub.publish_file(folder, out, data)
        self._models[name] = stamp
        return out


__all__ = ["Publisher", "cv_csv", "model_entry"]
