"""Read a job's verified results: for ``show``, ``export`` and :func:`load_results`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from searchd.errors import CheckpointError, NotFoundError
from searchd.state.checkpoint import read_results
from searchd.state.results import DONE, ModelResults
from searchd.state.store import CheckpointStore, load_key


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


@dataclass(frozen=True)
class JobResults:
    job_id: str
    models: dict[str, ModelSearch]
    splits: list[Any]

    def __getitem__(self, name: str) -> ModelSearch:
        return self.models[name]

    @property
    def best(self) -> ModelSearch:
        """The model type with the best CV score among the finished ones."""
        done = [m for m in self.models.values() if m.best_score_ is not None
                and m.state == DONE]
        if not done:
            raise NotFoundError(f"job {self.job_id}: no model type has finished yet")
        return max(done, key=lambda m: m.best_score_ or float("-inf"))


def job_store(state_dir: Path, job_id: str) -> CheckpointStore:
    job_dir = Path(state_dir) / job_id
    if not job_dir.is_dir():
        raise NotFoundError(f"no job {job_id!r} in {state_dir}")
    return CheckpointStore(job_dir, load_key(Path(state_dir)), job_id)


def read_checkpoint(store: CheckpointStore, name: str) -> Any:
    data, refused = store.read(name)
    if data is None:
        if refused:
            raise CheckpointError(f"{refused[0].path}: {refused[0].reason}")
        raise NotFoundError(f"job {store.job_id}: no {name} checkpoint yet")
    return data


def read_job_results(store: CheckpointStore) -> dict[str, Any]:
    """The job's verified results checkpoint (base and deltas); errors if there is none."""
    data, refused = read_results(store)
    if data is None:
        if refused:
            raise CheckpointError(f"{refused[0].path}: {refused[0].reason}")
        raise NotFoundError(f"job {store.job_id}: no results checkpoint yet")
    return data


def load_results(job_id: str, state_dir: str | Path = "state",
                 with_estimators: bool = True) -> JobResults:
    """The verified results of a job, per model type, in GridSearchCV's terms.

    Every checkpoint's signature is checked before it is unpickled; one that
    fails raises :class:`~searchd.errors.CheckpointError` and is never loaded.
    """
    store = job_store(Path(state_dir), job_id)
    data = read_job_results(store)
    models: dict[str, ModelSearch] = {}
    for name, res in data["models"].items():
        res_: ModelResults = res
        est = None
        if res_.state == DONE and with_estimators and not res_.refit_error:
            est = read_checkpoint(store, f"model-{name}")["estimator"]
        models[name] = ModelSearch(
            name=name, state=res_.state, cv_results_=res_.cv_results(),
            best_index_=res_.best_index, best_params_=res_.best_params,
            best_score_=res_.best_score, best_estimator_=est, test_score_=res_.test_score,
            refit_time_=res_.refit_time, fits_done=res_.fits_done, fits_total=res_.fits_total,
            errors=dict(res_.errors))
    return JobResults(job_id=job_id, models=models, splits=data["splits"])
