"""What the report takes from a job's frozen job file (``state/<job>/job.toml|json``).

The results do not say everything the page needs: which scorer picks the best when there
are several, whether a type searched at random (its results look like a grid's), and
which parameters were drawn from a distribution (no grid edge to warn about; a log axis
for a log-uniform one). A job file that is missing or unreadable gives :data:`UNKNOWN`,
and the report guesses instead.
"""

from __future__ import annotations

import json
import logging
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from searchd.jobs.distributions import NAMES
from searchd.state.files import read_private

log = logging.getLogger(__name__)

#: distributions whose samples are spread evenly on a log scale
LOG_UNIFORM = frozenset({"loguniform", "reciprocal"})


@dataclass(frozen=True)
class JobFacts:
    #: the scorer that picks the best ("score" with one scorer; None: unknown, guess)
    refit: str | None = None
    #: per model type, "grid" | "random" | "halving" (a type not listed: "grid")
    search: dict[str, str] = field(default_factory=dict)
    #: per model type, its parameters drawn from a distribution, by distribution name
    drawn: dict[str, dict[str, str]] = field(default_factory=dict)

    def log_params(self, model: str) -> frozenset[str]:
        """The parameters of ``model`` drawn log-uniformly (plotted on a log axis)."""
        return frozenset(k for k, d in self.drawn.get(model, {}).items() if d in LOG_UNIFORM)


UNKNOWN = JobFacts()


def read_job_facts(job_dir: Path) -> JobFacts:
    """The facts of the job in ``job_dir``; :data:`UNKNOWN` without a readable job file."""
    for name, parse in (("job.toml", tomllib.loads), ("job.json", json.loads)):
        try:
            doc = parse(read_private(job_dir / name).decode())
        except FileNotFoundError:
            continue
        except (OSError, ValueError, UnicodeDecodeError) as e:  # damaged: guess instead
            log.warning("%s: %s unreadable (%s); the report guesses", job_dir, name, e)
            return UNKNOWN
        return facts(doc) if isinstance(doc, dict) else UNKNOWN
    return UNKNOWN


def facts(doc: dict[str, Any]) -> JobFacts:
    """The facts of a parsed job file (validated when it was accepted; read defensively
    all the same, since the report must draw whatever it finds)."""
    search = doc.get("search")
    if not isinstance(search, dict) or not isinstance(search.get("scoring"), list):
        refit: str | None = "score"
    else:
        refit = search.get("refit") if isinstance(search.get("refit"), str) else None
    kinds: dict[str, str] = {}
    drawn: dict[str, dict[str, str]] = {}
    models = doc.get("models")
    for name, m in (models.items() if isinstance(models, dict) else ()):
        if not isinstance(m, dict):
            continue
        kind = m.get("search", "grid")
        kinds[name] = kind if kind in ("grid", "random", "halving") else "grid"
        grids = m.get("grid")
        found: dict[str, str] = {}
        for g in grids if isinstance(grids, list) else [grids]:
            for k, v in (g.items() if isinstance(g, dict) else ()):
                if isinstance(v, dict) and len(v) == 1 and next(iter(v)) in NAMES:
                    found[k] = next(iter(v))
        if found:
            drawn[name] = found
    return JobFacts(refit, kinds, drawn)
