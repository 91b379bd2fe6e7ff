"""Write a job's best fitted model to a file: pickle, joblib or skops."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

from searchd.errors import NotFoundError, SearchdError
from searchd.state.read import job_store, read_checkpoint, read_job_results
from searchd.state.results import DONE
from searchd.state.store import atomic_write

FORMATS = ("pickle", "joblib", "skops")


def best_model(state_dir: Path, job_id: str, model: str | None) -> tuple[str, Any]:
    """(model type, fitted estimator): of ``model``, or of the best finished type."""
    store = job_store(state_dir, job_id)
    results = read_job_results(store)["models"]
    if model is not None:
        if model not in results:
            raise NotFoundError(f"job {job_id} has no model type {model!r} "
                                f"(it has {', '.join(results)})")
        if results[model].state != DONE:
            raise NotFoundError(f"job {job_id}: model type {model!r} has not finished yet "
                                f"({results[model].fits_done}/{results[model].fits_total} fits)")
        if results[model].refit_error:
            raise NotFoundError(f"job {job_id}: model type {model!r} has no fitted model: "
                                f"{results[model].refit_error}")
        name = model
    else:
        done = {n: r for n, r in results.items() if r.state == DONE and not r.refit_error}
        if not done:
            raise NotFoundError(f"job {job_id}: no model type has finished yet")
        name = max(done, key=lambda n: done[n].best_score
                   if done[n].best_score is not None else float("-inf"))
    return name, read_checkpoint(store, f"model-{name}")["estimator"]


def export_model(state_dir: Path, job_id: str, model: str | None, fmt: str, out: Path) -> str:
    name, est = best_model(state_dir, job_id, model)
    if fmt == "pickle":
        data = pickle.dumps(est, protocol=pickle.HIGHEST_PROTOCOL)
    elif fmt == "joblib":
        import io

        import joblib
        buf = io.BytesIO()
        joblib.dump(est, buf)
        data = buf.getvalue()
    elif fmt == "skops":
        try:
            import skops.io as sio
        except ImportError:
            raise SearchdError("export --format skops needs skops: "
                               "pip install 'searchd[skops]'") from None
        data = sio.dumps(est)
    else:
        raise SearchdError(f"unknown format {fmt!r} (expected {', '.join(FORMATS)})")
    try:
        atomic_write(Path(out), data)
    except OSError as e:
        raise SearchdError(f"{out}: cannot write: {e.strerror or e}") from None
    return name
