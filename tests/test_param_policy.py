"""The parameter audit (searchd/worker/param_policy.py), repeated and attacked.

- The audit is repeated against the installed scikit-learn: every parameter of every public
  estimator must be classified, and each safe one must still take only the kinds of values
  its class of safety allows (``_parameter_constraints``), so an upgrade that adds a
  parameter or lets a safe one take free text fails here instead of opening a hole.
- Job files that really attack: a ``memory`` folder holding planted pickles (shown to run
  code when scikit-learn is given that folder directly; searchd refuses the job through
  ``searchd validate`` and the real worker process, and the pickles are never loaded), a
  vectorizer reading files, and the same refused values nested in estimator-valued
  parameters, grid lists, grid keys and ``[[preprocess]]`` steps.
"""

from __future__ import annotations

import inspect
import numbers
import os
import pickle
import re
import subprocess
import sys
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sklearn.cluster import FeatureAgglomeration
from sklearn.datasets import load_iris
from sklearn.utils import _param_validation as pv
from sklearn.utils import all_estimators

from searchd import protocol
from searchd.cli.main import main as searchd_main
from searchd.errors import JobSpecError
from searchd.jobs.load import parse_job
from searchd.jobs.spec import JobSpec
from searchd.settings import Settings
from searchd.state.signing import load_key
from searchd.worker.estimators import build_candidate, build_estimator, check_model
from searchd.worker.param_policy import (
    AUDITED_SKLEARN,
    RULES,
    SAFE,
    SAFE_NAMES,
    UNVALIDATED,
    refusal,
)

#: every public estimator as a fresh process lists them: the experimental halving searches
#: join all_estimators() only once their enabler is imported (an earlier test's reference
#: may have done it), and the worker never imports it
ESTIMATORS = [(n, c) for n, c in all_estimators()
              if not c.__module__.endswith("_search_successive_halving")]


def _parameters() -> Iterator[tuple[str, type, str]]:
    for name, cls in ESTIMATORS:
        for p in cls._get_param_names():
            yield name, cls, p


# --- the audit, repeated ----------------------------------------------------------------------

def test_every_public_estimator_parameter_is_in_the_audit() -> None:
    missing = sorted(f"{n}.{p}" for n, _, p in _parameters()
                     if p not in RULES and p not in SAFE_NAMES)
    assert not missing, (f"parameters the audit (of scikit-learn {AUDITED_SKLEARN}) has not "
                         f"classified: {missing}; read what they do, then add them to "
                         "searchd/worker/param_policy.py")


def test_the_audit_counts() -> None:
    """What RELIABILITY.md reports; fails (on purpose) when scikit-learn changes them."""
    pairs = list(_parameters())
    names = {p for _, _, p in pairs}
    assert (len(ESTIMATORS), len(pairs), len(names)) == (208, 1756, 398)
    assert len(RULES) == 17 and len(names & RULES.keys()) == 17


def test_each_name_is_classified_once_and_still_used() -> None:
    seen: dict[str, list[str]] = defaultdict(list)
    for why, names in SAFE.items():
        for n in names:
            seen[n].append(why)
    for n in RULES:
        seen[n].append("rules")
    assert not {n: w for n, w in seen.items() if len(w) > 1}
    used = {p for _, _, p in _parameters()}
    assert not set(seen) - used, "stale names: scikit-learn no longer has them"


def _kind(c: Any) -> str:
    """What a job-file value can be for one of scikit-learn's parameter constraints."""
    if isinstance(c, pv.Hidden):
        c = c.constraint
    if c is None:
        return "number"
    if isinstance(c, str):
        c = pv.make_constraint(c)
    if isinstance(c, pv.StrOptions):
        return "choice"
    if isinstance(c, (pv.Options, pv.Interval, pv._Booleans, pv._VerboseHelper,
                      pv._RandomStates, pv._NoneConstraint)):
        return "number"
    if isinstance(c, pv._Callables) or c is callable:
        return "callable"
    if isinstance(c, (pv._ArrayLikes, pv._SparseMatrices, pv._CVObjects, pv.MissingValues,
                      pv._IterablesNotString)):
        return "data"
    if isinstance(c, pv.HasMethods):
        return "estimator" if "fit" in c.methods or "transform" in c.methods else "data"
    if isinstance(c, pv._InstancesOf):
        c = c.type
    if isinstance(c, type):
        if c is str:
            return "str"
        if issubclass(c, numbers.Number) or c is type(None):
            return "number"
        if c in (list, tuple, dict) or c.__name__ in ("ndarray", "Mapping", "MutableMapping"):
            return "data"
        return "object"  # a class a job cannot build: BaseLoss, Kernel, ClusterMixin, ...
    raise AssertionError(f"a constraint this test does not know: {c!r}")


def _kinds(cls: type, p: str) -> set[str]:
    cons = getattr(cls, "_parameter_constraints", None)
    if cons is None or p not in cons or cons[p] == "no_validation":
        return {"unvalidated"}
    return {_kind(c) for c in cons[p]}


#: what values each class of safety may take; "str" (free text) only where reviewed
KINDS = {
    "numbers and flags": {"number"},
    "numbers or fixed choices": {"number", "choice"},
    "data": {"number", "choice", "data"},
    "callables or fixed choices": {"number", "choice", "data", "callable", "object"},
    "estimators": {"number", "choice", "data", "callable", "object", "estimator"},
    "free text, reviewed": {"number", "choice", "data", "callable", "object", "str"},
}


def test_safe_parameters_take_only_what_their_class_of_safety_allows() -> None:
    assert KINDS.keys() == SAFE.keys()
    wrong = []
    for name, cls, p in _parameters():
        if p in RULES:
            continue
        why = next(w for w, names in SAFE.items() if p in names)
        kinds = _kinds(cls, p)
        if "unvalidated" in kinds and (name, p) in UNVALIDATED:
            kinds.discard("unvalidated")
        if not kinds <= KINDS[why]:
            wrong.append(f"{name}.{p} ({why}): {sorted(kinds - KINDS[why])}")
    assert not wrong, f"re-read these parameters: {wrong}"


SUSPECT = {"file", "filename", "files", "path", "dir", "directory", "folder", "url", "uri",
           "http", "https", "cache", "memory", "module", "import", "pickle", "load", "eval",
           "exec", "shell", "env", "environ", "open", "socket", "attr", "getattr", "format"}


def test_no_fixed_choice_of_a_safe_parameter_names_a_file_or_code() -> None:
    found = []
    for name, cls, p in _parameters():
        if p in RULES:
            continue
        for c in getattr(cls, "_parameter_constraints", {}).get(p, []):
            c = c.constraint if isinstance(c, pv.Hidden) else c
            if isinstance(c, pv.StrOptions):
                found += [f"{name}.{p}={o!r}" for o in c.options
                          if SUSPECT & set(re.split(r"[^a-z0-9]+", o.lower()))]
    assert not found, f"read what these choices do: {found}"


def test_every_default_passes_its_rule() -> None:
    """build_candidate checks by name alone: no default a job can write may be refused."""
    for name, cls, p in _parameters():
        if p in RULES:
            d = inspect.signature(cls).parameters[p].default
            if d is None or isinstance(d, (str, int, float, bool)):
                assert refusal(p, d, True) is None, (name, p, d)


def test_each_rule_says_why_in_one_line() -> None:
    for name, rule in RULES.items():
        assert rule.reason and "\n" not in rule.reason + rule.allows, name


@pytest.mark.parametrize(("name", "good", "bad"), [
    ("memory", [None], ["/tmp/cache", "", ".", 0, False, ["/tmp"]]),
    ("input", ["content"], ["filename", "file", "Content", None]),
    ("encoding", ["utf-8", "latin-1"], ["rot_13", "idna", "../x", "uu_codec", 1]),
    ("dtype", [None, "float64", "int32"], ["(1000000000,)f8", "O", "V1000000", "float64,f8"]),
    ("token_pattern", [None, r"(?u)\b\w\w+\b", r"\w+"], ["(", "x" * 101, 5]),
    ("pre_dispatch", [1, 8, "all", "n_jobs", "2*n_jobs", "1.5 * n_jobs"],
     ["9**9**9", "n_jobs**n_jobs", "2*n_jobs+1", "(1)", 0, True]),
    ("importance_getter", ["auto", "coef_", "regressor_.coef_", "named_steps.m.coef_"],
     ["__class__", "coef_.__class__.__init__.__globals__", "_private", "a..b", "a.", 3]),
    ("verbose_feature_names_out",
     [True, False, "{transformer_name}__{feature_name}", "{feature_name}"],
     ["{feature_name.__class__}", "{feature_name[0]}", "{feature_name:>999999999}",
      "{feature_name!r}", "{0}", "{}", "{x}", "{", 1]),
    ("chain_method", ["predict", ["predict_proba", "predict"]],
     ["__class__", ["predict", "__class__"], ["fit"], [], "fit"]),
    ("param_grid", [], [["C"], "C", None]),
    ("metric_params", [None], [[], "func", ["p", 3]]),
    ("kw_args", [None], [[]]),
])
def test_rules(name: str, good: list[Any], bad: list[Any]) -> None:
    for v in good:
        assert refusal(name, v, True) is None, v
    for v in bad:
        assert refusal(name, v, True) is not None, v


def test_a_name_the_audit_does_not_know() -> None:
    assert refusal("new_in_sklearn_2", 1, True) is not None  # on a scikit-learn estimator
    assert refusal("new_in_sklearn_2", 1, False) is None  # an allow_modules estimator
    assert refusal("memory", "/tmp/x", False) is not None  # ... where known names still count


MYMOD = """
from sklearn.base import BaseEstimator, ClassifierMixin

class Cached(ClassifierMixin, BaseEstimator):
    def __init__(self, memory=None, lr=0.1):
        self.memory = memory
        self.lr = lr
"""


def test_allow_modules_estimators_follow_the_known_rules(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "polmod.py").write_text(MYMOD)
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        assert build_estimator("polmod.Cached", {"lr": 0.5}, ("polmod",), "w").lr == 0.5
        with pytest.raises(JobSpecError, match=r"^w\.params\.memory: '/x' is refused for "
                           r"Cached's parameter 'memory': a joblib cache folder"):
            build_estimator("polmod.Cached", {"memory": "/x"}, ("polmod",), "w")
    finally:
        sys.modules.pop("polmod", None)


# --- attacks: job files -----------------------------------------------------------------------

class Planted:
    """A pickle whose loading would create a file: proof of code execution."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (open, (str(self.marker), "w"))


def _planted_cache(tmp_path: Path) -> tuple[Path, Path]:
    """A joblib cache folder whose every entry is a planted pickle, shown to run code
    when scikit-learn itself is handed the folder: the attack is real."""
    cache, marker = tmp_path / "cache", tmp_path / "marker-unpickled"
    X = load_iris().data
    FeatureAgglomeration(n_clusters=2, memory=str(cache)).fit(X)
    outputs = list(cache.rglob("output.pkl"))
    assert outputs, "joblib wrote no cache entry"
    for out in outputs:
        out.write_bytes(pickle.dumps(Planted(marker)))
    with pytest.raises(Exception):  # noqa: B017 - the planted object is no ward tree
        FeatureAgglomeration(n_clusters=2, memory=str(cache)).fit(X)
    assert marker.exists(), "the planted pickle did not run: the attack test proves nothing"
    marker.unlink()
    return cache, marker


def _listing(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in folder.rglob("*")}


def _memory_job(cache: Path) -> str:
    return f"""
[data]
source = "sklearn:iris"
[search]
cv = 3
[[preprocess]]
name = "agg"
estimator = "FeatureAgglomeration"
params = {{ n_clusters = 2, memory = {str(cache)!r} }}
[models.lr]
estimator = "LogisticRegression"
grid = {{ C = [0.5, 1.0] }}
"""


def test_validate_refuses_a_memory_folder_and_never_loads_its_pickles(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cache, marker = _planted_cache(tmp_path)
    before = _listing(cache)
    job = tmp_path / "x.toml"
    job.write_text(_memory_job(cache))
    assert searchd_main(["validate", str(job), "--state", str(tmp_path / "state")]) != 0
    err = capsys.readouterr().err
    assert err.startswith(f"searchd: error: {job}: preprocess.agg.params.memory: "
                          f"{str(cache)!r} is refused for FeatureAgglomeration's parameter "
                          "'memory': a joblib cache folder"), err
    assert not marker.exists()
    assert _listing(cache) == before  # nothing read into or written to the folder


@pytest.mark.timeout(60)
def test_the_worker_refuses_a_memory_folder_before_any_fit(tmp_path: Path) -> None:
    """The real worker process, on the job as the daemon would have accepted it."""
    cache, marker = _planted_cache(tmp_path)
    before = _listing(cache)
    state, jobs = tmp_path / "state", tmp_path / "jobs"
    jobs.mkdir()
    load_key(state, create=True)
    (state / "evil").mkdir(mode=0o700)
    (state / "evil" / "job.toml").write_text(_memory_job(cache))
    settings = Settings(state_dir=state, jobs_dir=jobs, n_jobs=1)
    out = subprocess.run([sys.executable, "-m", "searchd.worker", "--job", "evil",
                          "--settings", protocol.encode_settings(settings)],
                         capture_output=True, text=True, timeout=50, cwd=tmp_path,
                         env={**os.environ, "SEARCHD_LOG_FORMAT": "%(message)s"})
    assert out.returncode == protocol.Exit.INVALID, out.stderr
    assert "preprocess.agg.params.memory:" in out.stderr
    assert "is refused for FeatureAgglomeration's parameter 'memory'" in out.stderr
    assert not marker.exists()
    assert _listing(cache) == before


def job(body: str, preprocess: str = "") -> JobSpec:
    text = f'[data]\nsource = "sklearn:iris"\n[search]\ncv = 3\n{preprocess}\n{body}\n'
    return parse_job(text.encode(), Path("jobs/x.toml"), 10_000)


def refused(spec: JobSpec) -> str:
    with pytest.raises(JobSpecError) as e:
        for m in spec.models:
            check_model(spec, m, ())
    msg = str(e.value)
    assert msg.startswith("jobs/x.toml: ") and "\n" not in msg
    return msg


AGG = '{ estimator = "FeatureAgglomeration", params = { memory = "/tmp/planted" } }'
TTR = '[models.m]\nestimator = "TransformedTargetRegressor"\n'
STEP = '[[preprocess]]\nname = "agg"\nestimator = "FeatureAgglomeration"\n'
VEC = '[[preprocess]]\nname = "vec"\nestimator = "CountVectorizer"\n'

ATTACKS = {
    "model params": ('[models.m]\nestimator = "AgglomerativeClustering"\n'
                     'params = { memory = "/tmp/planted" }\n',
                     "", "models.m.params.memory: '/tmp/planted' is refused for "
                     "AgglomerativeClustering's parameter 'memory'"),
    "OPTICS": ('[models.m]\nestimator = "OPTICS"\nparams = { memory = "/tmp/planted" }\n',
               "", "models.m.params.memory: '/tmp/planted' is refused for OPTICS's"),
    "estimator-valued param": (f"{TTR}params = {{ transformer = {AGG} }}\n", "",
                               "models.m.params.transformer.params.memory: '/tmp/planted' "
                               "is refused for FeatureAgglomeration's parameter 'memory'"),
    "an estimator as n_clusters": (
        '[models.m]\nestimator = "Birch"\nparams = { n_clusters = { estimator = '
        '"AgglomerativeClustering", params = { memory = "/tmp/planted" } } }\n', "",
        "models.m.params.n_clusters.params.memory: '/tmp/planted' is refused for "
        "AgglomerativeClustering's"),
    "three levels deep": (
        '[models.m]\nestimator = "BaggingRegressor"\nparams = { estimator = { estimator = '
        f'"TransformedTargetRegressor", params = {{ transformer = {AGG} }} }} }}\n', "",
        "models.m.params.estimator.params.transformer.params.memory: '/tmp/planted'"),
    "fixed nested key": (f'{TTR}params = {{ transformer = {{ estimator = "FeatureAgglomeration"'
                         ' }, transformer__memory = "/tmp/planted" }\n', "",
                         "models.m.params.transformer__memory: '/tmp/planted' is refused for "
                         "FeatureAgglomeration's parameter 'memory'"),
    "grid list of estimators": (
        f'{TTR}grid = {{ transformer = [{{ estimator = "StandardScaler" }}, {AGG}] }}\n', "",
        "models.m.grid.transformer[1].params.memory: '/tmp/planted' is refused"),
    "grid nested key": (f'{TTR}params = {{ transformer = {{ estimator = "FeatureAgglomeration"'
                        ' } }\ngrid = { transformer__memory = [{ none = true }, '
                        '"/tmp/planted"] }\n',
                        "", "models.m.grid.transformer__memory[1]: '/tmp/planted' is refused for "
                        "FeatureAgglomeration's parameter 'memory'"),
    "grid nested key, parent in the same grid": (
        f'{TTR}grid = {{ transformer = [{{ estimator = "FeatureAgglomeration" }}], '
        'transformer__memory = ["/tmp/planted"] }\n', "",
        "models.m.grid.transformer__memory[0]: '/tmp/planted' is refused for "
        "FeatureAgglomeration's"),
    "grid nested key behind a pipeline": (
        f'{TTR}params = {{ transformer = {{ estimator = "FeatureAgglomeration" }} }}\n'
        'grid = { transformer__memory = ["/tmp/planted"] }\n',
        '[[preprocess]]\nname = "scale"\nestimator = "StandardScaler"\n',
        "models.m.grid.transformer__memory[0]: '/tmp/planted' is refused for "
        "FeatureAgglomeration's"),
    "preprocess step": ('[models.m]\nestimator = "LogisticRegression"\n',
                        f'{STEP}params = {{ memory = "/tmp/planted" }}\n',
                        "preprocess.agg.params.memory: '/tmp/planted' is refused for "
                        "FeatureAgglomeration's parameter 'memory'"),
    "preprocess step through the grid": (
        '[models.m]\nestimator = "LogisticRegression"\ngrid = { agg__memory = ["/tmp/planted"] }\n',
        STEP, "models.m.grid.agg__memory[0]: '/tmp/planted' is refused for "
        "FeatureAgglomeration's parameter 'memory'"),
    "vectorizer reading files": ('[models.m]\nestimator = "LogisticRegression"\n',
                                 f'{VEC}params = {{ input = "filename" }}\n',
                                 "preprocess.vec.params.input: 'filename' is refused for "
                                 "CountVectorizer's parameter 'input': 'filename' and 'file' "
                                 "make the vectorizer open every sample as a path"),
    "vectorizer reading files, in a grid": (
        '[models.m]\nestimator = "LogisticRegression"\n'
        'grid = { vec__input = ["content", "file"] }\n', VEC,
        "models.m.grid.vec__input[1]: 'file' is refused for CountVectorizer's"),
    "a codec module": ('[models.m]\nestimator = "LogisticRegression"\n',
                       f'{VEC}params = {{ encoding = "rot_13" }}\n',
                       "preprocess.vec.params.encoding: 'rot_13' is refused"),
    "a pass-through keyword table": ('[models.m]\nestimator = "KNeighborsClassifier"\n'
                                     'grid = { metric_params = [["func"]] }\n', "",
                                     "models.m.grid.metric_params[0]: ['func'] is refused for "
                                     "KNeighborsClassifier's parameter 'metric_params'"),
}


@pytest.mark.parametrize("name", ATTACKS)
def test_refused_wherever_a_job_puts_it(name: str) -> None:
    body, preprocess, reason = ATTACKS[name]
    msg = refused(job(body, preprocess))
    assert msg.startswith(f"jobs/x.toml: {reason}"), msg


def test_safe_values_of_restricted_parameters_are_accepted() -> None:
    spec = job(f'{TTR}params = {{ transformer = {{ estimator = "FeatureAgglomeration", params = '
               '{ memory = { none = true } } } }\n'
               'grid = { transformer__memory = [{ none = true }] }\n',
               f'{VEC}params = {{ input = "content", encoding = "utf-8" }}\n')
    for m in spec.models:
        check_model(spec, m, ())


def test_build_candidate_refuses_by_name_too() -> None:
    """The worker's per-candidate check, should a candidate not come from a checked grid."""
    spec = job('[models.m]\nestimator = "LogisticRegression"\n', STEP)
    with pytest.raises(JobSpecError, match=r"^w\.agg__memory: '/tmp/planted' is refused: a "
                                           "joblib cache folder"):
        build_candidate({"agg__memory": "/tmp/planted"}, spec, (), "w")
    assert build_candidate({"agg__memory": None}, spec, (), "w") == {"agg__memory": None}
