"""Job files → a validated, frozen :class:`~searchd.jobs.spec.JobSpec`: read, check the id,
validate, count the candidates and fits against the daemon's limits, and only then expand
the grids."""

from __future__ import annotations

import hashlib
from pathlib import Path

from searchd.errors import JobSpecError
from searchd.jobs.ids import job_id_of, job_id_problem
from searchd.jobs.limits import JobLimits, generator_bytes, size, too_many_fits
from searchd.jobs.reading import parse_bytes, read_job_bytes
from searchd.jobs.spec import JobSpec
from searchd.jobs.validate import SATURATED, Validator


def load_job(path: Path, limits: JobLimits | int, job_id: str | None = None,
             base_dir: Path | None = None) -> JobSpec:
    """Read and validate a job file. ``base_dir`` resolves relative data paths."""
    raw_bytes, _ = read_job_bytes(path)
    return parse_job(raw_bytes, path, limits, job_id=job_id, base_dir=base_dir)


def parse_job(raw_bytes: bytes, path: Path, limits: JobLimits | int, job_id: str | None = None,
              base_dir: Path | None = None) -> JobSpec:
    """The job in ``raw_bytes`` (read from ``path``), checked against ``limits`` (an int:
    ``max_candidates`` alone). The priority is the file's: :func:`effective_priority`
    clips it where jobs are ordered."""
    if isinstance(limits, int):
        limits = JobLimits.candidates_only(limits)
    max_candidates = limits.max_candidates
    jid = job_id or job_id_of(path)
    problem = job_id_problem(jid)
    if problem:
        raise JobSpecError(f"{path}: {problem}")
    doc = parse_bytes(raw_bytes, path)
    v = Validator(path)
    v.keys(doc, "", {"priority", "data", "search", "preprocess", "models"})
    priority = v.integer(doc.get("priority", 0), "priority")
    data = v.data(v.table(doc.get("data"), "data", required=True),
                  base_dir or path.parent)
    search = v.search(v.table(doc.get("search", {}), "search"))
    preprocess = v.preprocess(doc.get("preprocess", []))
    models_doc = v.table(doc.get("models"), "models", required=True)
    if not models_doc:
        raise JobSpecError(f"{path}: models: at least one model type is needed")
    counted = [v.model(name, spec) for name, spec in models_doc.items()]
    total = min(sum(m.n_candidates for m, _ in counted), SATURATED)
    if total > max_candidates:
        sizes = ", ".join(f"{m.name}: {howmany(m.n_candidates)}" for m, _ in counted)
        raise JobSpecError(
            f"{path}: models: the grids expand to {howmany(total)} candidates ({sizes}), "
            f"more than max_candidates ({max_candidates:,})")
    problem = too_many_fits(total, search.folds, limits)
    if problem:
        raise JobSpecError(f"{path}: search.cv: {problem}")
    kind, _, name = data.source.partition(":")
    if kind == "sklearn":  # checked here too: refused before the job is queued
        need = generator_bytes(name, data.params)
        if need is not None and need > limits.max_data_bytes:
            raise JobSpecError(
                f"{path}: data.params: sklearn:{name} would make {size(need)} of data, "
                f"more than max_data_bytes ({size(limits.max_data_bytes)})")
    # Only now, with the size known to be sane, are the value lists built.
    models = tuple(v.expand(m, raw) for m, raw in counted)
    return JobSpec(id=jid, path=path, priority=priority, data=data, search=search,
                   preprocess=preprocess, models=models,
                   digest=hashlib.sha256(raw_bytes).hexdigest())


def howmany(n: int) -> str:
    """A candidate count for a message; ``f"{n:,}"`` fails past 4,300 digits."""
    return f"{n:,}" if n < SATURATED else "more than 10^100"
