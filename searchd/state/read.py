"""Read a job's verified results: for ``show``, ``export`` and :func:`load_results`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from searchd.errors import CheckpointError, NotFoundError
from searchd.state.checkpoint import Snapshot, read_results
from searchd.state.history import history_store
from searchd.state.results import DONE, best_type
from searchd.state.signing import load_key
from searchd.state.store import CheckpointStore


@dataclass(frozen=True)
class ModelSearch:
    """One model type's search, with GridSearchCV's attribute names."""

    name: str
    state: str
    cv_results_: dict[str, Any]
    best_index_: int | None
    best_params_: dict[str, Any] | None
    best_score_: float | None
    #: the best candidate refitted on the whole training set (None until the type is done)
    best_estimator_: Any
    #: the refitted model's scores on the job's hold-out set (None without test_size)
    test_score_: dict[str, float] | None
    refit_time_: float | None
    fits_done: int
    fits_total: int
    errors: dict[tuple[int, int], str]
    #: why a done type has no refitted model (e.g. every candidate failed), else None
    refit_error: str | None = None
    #: halving searches: candidates and resources per round, and the rounds, as
    #: HalvingGridSearchCV names them (None for grid and random searches)
    n_candidates_: list[int] | None = None
    n_resources_: list[int] | None = None
    n_iterations_: int | None = None
    #: halving: the rest of its plan (min_resources_, max_resources_, n_required_iterations_, ...)
    halving: dict[str, Any] | None = None

    def to_frame(self) -> Any:
        """``cv_results_`` as a pandas DataFrame, as ``pd.DataFrame(search.cv_results_)``."""
        import pandas as pd

        return pd.DataFrame(self.cv_results_)


@dataclass(frozen=True)
class JobResults:
    job_id: str
    models: dict[str, ModelSearch]
    splits: list[Any]
    #: the model type :func:`~searchd.state.results.best_type` chose (None: none is done)
    best_name: str | None = None

    def __getitem__(self, name: str) -> ModelSearch:
        return self.models[name]

    @property
    def best(self) -> ModelSearch:
        """The finished model type with the best CV score (``best_type`` decides)."""
        if self.best_name is None:
            raise NotFoundError(f"job {self.job_id}: no model type has finished yet")
        return self.models[self.best_name]

    def to_frame(self) -> Any:
        """Every model type's ``cv_results_`` in one DataFrame, a ``model`` column first
        (parameters one type lacks are missing in its rows)."""
        import pandas as pd

        frames = [m.to_frame().assign(model=name) for name, m in self.models.items()]
        if not frames:
            return pd.DataFrame({"model": []})
        df = pd.concat(frames, ignore_index=True)
        return df[["model", *(c for c in df.columns if c != "model")]]


def job_store(state_dir: Path, job_id: str, history: int | None = None) -> CheckpointStore:
    """The job's checkpoints, or those of its archived results ``history`` (``history/<n>``)."""
    job_dir = Path(state_dir) / job_id
    if not job_dir.is_dir():
        raise NotFoundError(f"no job {job_id!r} in {state_dir}")
    if history is not None:
        return history_store(Path(state_dir), job_id, history, load_key(Path(state_dir)))
    return CheckpointStore(job_dir, load_key(Path(state_dir)), job_id)


def read_checkpoint(store: CheckpointStore, name: str) -> Any:
    data, refused = store.read(name)
    if data is None:
        if refused:
            raise CheckpointError(f"{refused[0].path}: {refused[0].reason}")
        raise NotFoundError(f"job {store.job_id}: no {name} checkpoint yet")
    return data


def read_job_results(store: CheckpointStore) -> Snapshot:
    """The job's verified results checkpoint (base and deltas); errors if there is none."""
    data, refused = read_results(store)
    if data is None:
        if refused:
            raise CheckpointError(f"{refused[0].path}: {refused[0].reason}")
        raise NotFoundError(f"job {store.job_id}: no results checkpoint yet")
    return data


def _halving(plan: dict[str, Any] | None) -> dict[str, Any]:
    if plan is None:
        return {}
    return {"n_candidates_": list(plan["n_candidates_"]),
            "n_resources_": list(plan["n_resources_"]),
            "n_iterations_": plan["n_iterations_"], "halving": dict(plan)}


def load_results(job_id: str, state_dir: str | Path = "state",
                 with_estimators: bool = True, history: int | None = None) -> JobResults:
    """The verified results of a job, per model type, in GridSearchCV's terms (with
    ``history = n``: the results archived in ``state/<job>/history/<n>/`` when an edit
    changed the job's evaluation context).

    Every checkpoint's signature is checked before it is unpickled; one that
    fails raises :class:`~searchd.errors.CheckpointError` and is never loaded.
    """
    store = job_store(Path(state_dir), job_id, history)
    snap = read_job_results(store)
    models: dict[str, ModelSearch] = {}
    for name, res in snap.models.items():
        est = None
        if res.state == DONE and with_estimators and not res.refit_error:
            est = read_checkpoint(store, f"model-{name}")["estimator"]
        models[name] = ModelSearch(
            name=name, state=res.state, cv_results_=res.cv_results(),
            best_index_=res.best_index, best_params_=res.best_params,
            best_score_=res.best_score, best_estimator_=est, test_score_=res.test_score,
            refit_time_=res.refit_time, fits_done=res.fits_done, fits_total=res.fits_total,
            errors=dict(res.errors), refit_error=res.refit_error,
            **_halving(res.halving))
    return JobResults(job_id=job_id, models=models, splits=snap.splits,
                      best_name=best_type(snap.models))
