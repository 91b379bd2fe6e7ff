"""Hostile job files: nothing a job file says crashes searchd or imports code.

Two parts:

- Property tests (hypothesis) mutate valid job documents and raw job-file bytes and feed
  thousands of them through the checks the daemon and its worker make, in the same order:
  ``parse_job`` (the supervisor), then ``check_model`` for every model, ``is_classification``
  and ``load_dataset`` (the worker's ``JobRun.prepare``). Only ``JobSpecError``/``DataError``
  may escape, as one line that starts with the file's path, and no module outside the
  allow-list is imported (marker modules on ``sys.path`` would leave a file behind).
- A hand-made corpus through the real daemon (``searchd run --drain``): every bad file ends
  ``invalid`` with a precise reason naming it (or is ignored with a log line, when its name
  cannot be a job id), a good job and a job whose fits raise complete, the daemon exits 0.

The number of inputs tried is printed at the end (``-s``) and written to
``<pytest basetemp>/hostile_counts.json``; RELIABILITY.md reports it.
"""

from __future__ import annotations

import copy
import json
import math
import os
import random
import re
import shutil
import sys
import tomllib
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO, Env
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jobtexts import IRIS_KNN
from sklearn.base import clone

from searchd.errors import DataError, JobSpecError
from searchd.jobs.load import parse_job
from searchd.jobs.reading import MAX_DEPTH, MAX_JOB_BYTES
from searchd.worker.data import load_dataset
from searchd.worker.estimators import build_candidate, check_model, is_classification
from searchd.worker.plan import Scoring, new_results, splits

MAX_CANDIDATES = 2_000  # small: every accepted grid is expanded in memory

# --- seeds: valid jobs from the tests, the repo and the README -----------------------------------

IRIS = IRIS_KNN

DIGITS = """
[data]
source = "sklearn:digits"
test_size = 0.2
seed = 1
[search]
cv = { folds = 3, shuffle = true, seed = 7 }
scoring = ["accuracy", "f1_macro"]
refit = "f1_macro"
[[preprocess]]
name = "scale"
estimator = "StandardScaler"
params = { with_mean = true }
[models.lr]
estimator = "LogisticRegression"
params = { max_iter = 200 }
grid = { C = { logspace = [-2, 1, 4] }, scale__with_std = [true, false] }
[models.svc]
estimator = "sklearn.svm.SVC"
grid = [
  { kernel = ["linear"], C = { linspace = [0.1, 1.0, 3] } },
  { kernel = ["rbf"], gamma = { logspace = [-4, -1, 4] } },
]
"""

NESTED = """
priority = 3
[data]
source = "sklearn:make_classification"
params = { n_samples = 60, n_features = 4, random_state = 0 }
[search]
cv = 3
[models.bag]
estimator = "BaggingClassifier"
params = { random_state = 0, estimator = { estimator = "DecisionTreeClassifier" } }
grid = { n_estimators = { range = [2, 6, 2] }, estimator__max_depth = [1, { none = true }] }
[models.bag2]
estimator = "BaggingClassifier"
[models.bag2.grid]
estimator = [{ estimator = "DecisionTreeClassifier", params = { max_depth = 3 } },
             { estimator = "ExtraTreeClassifier" }]
estimator__min_samples_leaf = [1, 2]
"""

CSV = """
[data]
source = "csv:ok.csv"
target = "y"
[search]
cv = 2
[models.nb]
estimator = "GaussianNB"
grid = { var_smoothing = [1e-9, 1e-6] }
"""

SEEDS = {"iris": IRIS, "digits": DIGITS, "nested": NESTED, "csv": CSV,
         "example": (REPO / "jobs" / "example.toml").read_text(),
         # text categories, gaps, a string label and a ColumnTransformer's tables (issue 19)
         "mixed": (REPO / "jobs" / "mixed.toml").read_text().replace("data/mixed.csv",
                                                                     "mixed.csv")}
SEED_DOCS = {name: tomllib.loads(text) for name, text in SEEDS.items()}

# --- hostile ingredients -------------------------------------------------------------------------

EVIL_MODULES = ("evil_marker_mod", "evil_marker_pkg", "evil_marker_pkg.sub")

DISALLOWED = [
    "os.system", "os.popen", "subprocess.Popen", "subprocess.run", "builtins.eval",
    "builtins.exec", "builtins.__import__", "pickle.loads", "pickle.Unpickler", "marshal.loads",
    "importlib.import_module", "importlib.util.spec_from_file_location", "ctypes.CDLL",
    "shutil.rmtree", "antigravity.fly", "this.s", "webbrowser.open", "runpy.run_path",
    "code.interact", "pty.spawn", "numpy.load", "joblib.load", "scipy.io.loadmat",
    "sklearn.svm._classes.SVC", "sklearn.utils._testing.ignore_warnings",
    "sklearn.tests.test_base.K", "sklearn.conftest.X",
    "sklearn.experimental.enable_halving_search_cv.X",
    "sklearn.externals._packaging.version.Version", "sklearn.__check_build.X",
    "sklearn.model_selection.KFold", "sklearn.base.BaseEstimator", "sklearn.utils.all_estimators",
    "sklearn.datasets.load_iris", "sklearn.pipeline.make_pipeline", "sklearn", "sklearn.",
    ".SVC", "sklearn..SVC", "sklearn.svm.SVC.__init__", "sklearn.svm.SVC.__reduce__",
    "evil_marker_mod.Thing", "evil_marker_pkg.Thing", "evil_marker_pkg.sub.Thing",
    "sklearn.evil_marker_mod.Thing", "evil_marker_mod", "__import__", "eval",
]
GOOD_ESTIMATORS = [
    "KNeighborsClassifier", "SVC", "sklearn.svm.SVC", "LogisticRegression", "GaussianNB",
    "DecisionTreeClassifier", "StandardScaler", "BaggingClassifier", "Pipeline",
    "LinearRegression", "SelectFromModel", "KMeans", "PCA", "OneVsRestClassifier",
    "sklearn.ensemble.RandomForestClassifier", "sklearn.neighbors.KNeighborsClassifier",
]
DUNDERS = ["__class__", "__init__", "__reduce__", "__reduce_ex__", "__dict__", "__globals__",
           "__builtins__", "__import__", "__getattr__", "__setstate__", "_private", "__",
           "estimator__max_depth", "estimator____class__", "scale__with_mean", "C__",
           "model__C", "steps", "memory", "n_neighbors", "C", "kernel", "metric__x", "",
           " ", "a b", "x.y", "ñ", "💥", "\x00", "\n"]
KNOWN_KEYS = ["priority", "data", "search", "preprocess", "models", "source", "params",
              "target", "test_size", "seed", "cv", "folds", "shuffle", "scoring", "refit",
              "n_jobs", "backend", "name", "estimator", "grid", "range", "linspace",
              "logspace", "none"]
SOURCES = ["sklearn:iris", "sklearn:digits", "sklearn:wine", "sklearn:titanic",
           "sklearn:make_classification", "sklearn:make_blobs", "sklearn:make_low_rank_matrix",
           "sklearn:make_multilabel_classification", "sklearn:load_iris", "sklearn:fetch_openml",
           "sklearn:__class__", "sklearn:", "csv:ok.csv", "csv:nope.csv", "csv:binary.csv",
           "csv:sub", "csv:fifo.csv", "csv:/dev/zero", "csv:/dev/urandom", "csv:~nobody_xyz/a",
           "csv:/etc/passwd", "csv:ok.csv\x00x", "npz:data.npz", "npz:cut.npz", "npz:empty.npz",
           "npz:binary.csv", "npz:sub", "npz:/dev/zero", "npz:fifo.csv", "http://x", "os:system",
           "pickle:x.pkl", ":", "csv:", "npz:"]
HUGE_INTS = [2**31, 2**63, 2**64 + 1, -(2**63) - 1, 10**18, 10**100, 10**4299, -(10**4299)]
DEEP = "@@DEEP:{}@@"  # a placeholder the serialisers turn into n nested lists


def deep(n: int) -> str:
    return DEEP.format(n)


scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-5, 200), st.sampled_from(HUGE_INTS),
    st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([math.nan, math.inf, -0.0]),
    st.text(max_size=12), st.sampled_from(DISALLOWED + GOOD_ESTIMATORS + DUNDERS + SOURCES),
    st.sampled_from([deep(40), deep(500), deep(10_000)]),
)
keys = st.one_of(st.sampled_from(KNOWN_KEYS + DUNDERS), st.text(max_size=8))
#: parameter names, nested ones (``a__b``) on parameters the seeds' estimators have
HEADS = ["C", "n_jobs", "random_state", "metric", "estimator", "max_iter", "kernel",
         "n_neighbors", "var_smoothing", "with_mean", "scale", "model"]
param_names = st.one_of(
    st.sampled_from(HEADS),
    st.builds(lambda h, t: f"{h}__{t}", st.sampled_from(HEADS),
              st.sampled_from(["x", "max_depth", "", "__class__", "estimator__max_depth",
                               "set_params", "C"])),
    keys)
helper_args = st.lists(st.one_of(st.integers(-3, 30), st.sampled_from(HUGE_INTS),
                                 st.floats(allow_nan=True, allow_infinity=True)), max_size=4)
specials = st.one_of(
    st.builds(lambda k, a: {k: a}, st.sampled_from(["range", "linspace", "logspace"]),
              helper_args),
    st.builds(lambda v: {"none": v}, scalars),
    st.builds(lambda e, p: {"estimator": e, "params": p},
              st.sampled_from(DISALLOWED + GOOD_ESTIMATORS), st.dictionaries(keys, scalars,
                                                                            max_size=2)),
)
values = st.recursive(
    st.one_of(scalars, specials),
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(keys, inner, max_size=4)),
    max_leaves=8)


def _locations(node: Any, out: list[tuple[Any, Any]]) -> list[tuple[Any, Any]]:
    """Every (container, key) in a document, for a mutation to pick from."""
    if isinstance(node, dict):
        for k, v in node.items():
            out.append((node, k))
            _locations(v, out)
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out.append((node, i))
            _locations(v, out)
    return out


def _tables(node: Any, out: list[dict[str, Any]]) -> list[dict[str, Any]]:
    if isinstance(node, dict):
        out.append(node)
    for v in (node.values() if isinstance(node, dict) else node if isinstance(node, list)
              else ()):
        _tables(v, out)
    return out


@st.composite
def mutated_docs(draw: st.DrawFn) -> dict[str, Any]:
    doc = copy.deepcopy(SEED_DOCS[draw(st.sampled_from(sorted(SEED_DOCS)))])
    # Mostly mutations that keep the shape, so that many inputs get past the supervisor
    # into the worker's checks; blunter ones too.
    for _ in range(draw(st.integers(1, 3))):
        op = draw(st.sampled_from(["estimator", "grid", "params", "deep", "estimator",
                                   "grid", "params", "source", "estimator", "grid", "deep",
                                   "replace", "insert", "wrap", "rename", "drop"]))
        locs = _locations(doc, [])
        if op == "deep" and locs:  # nesting past the validator's (or a parser's) reach
            n = draw(st.sampled_from([500, 700, 2_000, 10_000, 40, 33]))
            # mostly where the validator recurses: a parameter value or a grid's values
            homes = [c[k] for c, k in locs if k in ("params", "grid") and isinstance(c[k], dict)]
            targeted = draw(st.integers(0, 3)) > 0
            if homes and targeted:
                home = draw(st.sampled_from(homes))
                home[draw(st.sampled_from(sorted(home) or ["C"]))] = deep(n)
            else:
                c, k = draw(st.sampled_from(locs))
                c[k] = deep(n)
            continue
        if op == "params":  # a model's fixed parameters
            models = doc.get("models")
            if isinstance(models, dict) and models:
                model = models[draw(st.sampled_from(sorted(models)))]
                if isinstance(model, dict):
                    params = model.setdefault("params", {})
                    if isinstance(params, dict):
                        params[draw(param_names)] = draw(st.one_of(scalars, specials, values))
            continue
        if op == "estimator":  # a model's, a step's or an estimator-valued parameter's name
            spots = [(c, k) for c, k in locs if k == "estimator"]
            if spots:
                c, k = draw(st.sampled_from(spots))
                c[k] = draw(st.one_of(st.sampled_from(DISALLOWED + GOOD_ESTIMATORS), scalars))
            continue
        if op == "grid":  # a hostile parameter name or value helper in a grid or params
            tables = [t for t in _tables(doc, []) if t is not doc]
            t = draw(st.sampled_from(tables))
            t[draw(keys)] = draw(st.one_of(
                st.lists(scalars, min_size=1, max_size=3), specials,
                st.sampled_from([{"range": [10**12]}, {"range": [0, 10**6, 1]},
                                 {"linspace": [0, 1, 10**12]}, {"logspace": [-400, 400, 3]},
                                 {"range": [0.0, 1e308, 1e-308]}])))
            continue
        if op == "source":
            data = doc.setdefault("data", {})
            if isinstance(data, dict):
                data["source"] = draw(st.sampled_from(SOURCES))
                if draw(st.booleans()):
                    data["target"] = draw(st.sampled_from(["y", "a", "nope", ""]))
            continue
        if not locs:
            doc[draw(keys)] = draw(values)
            continue
        c, k = draw(st.sampled_from(locs))
        if op == "drop":
            del c[k]
        elif op == "rename" and isinstance(c, dict):
            c[draw(keys)] = c.pop(k)
        elif op == "replace":
            c[k] = draw(values)
        elif op == "insert" and isinstance(c[k], dict):
            c[k][draw(keys)] = draw(values)
        elif op == "wrap":
            c[k] = draw(st.sampled_from([[c[k]], {"none": c[k]}, {"estimator": c[k]},
                                         {"range": c[k]}, str(c[k])]))
    return doc


# --- serialisers ---------------------------------------------------------------------------------

BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")
DEEP_TOKEN = re.compile(r'"@@DEEP:(\d+)@@"')


def _nest(m: re.Match[str]) -> str:
    n = int(m.group(1))
    return "[" * n + "]" * n


def _toml_str(s: str) -> str:
    out = []
    for ch in s:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or ch == "\x7f":
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _toml_value(v: Any) -> str:
    if v is None:  # TOML has no null: the documented spelling
        return "{ none = true }"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf") if math.isinf(v) \
            else repr(v)
    if isinstance(v, str):
        return _toml_str(v)
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    return "{ " + ", ".join(f"{_toml_key(k)} = {_toml_value(x)}" for k, x in v.items()) + " }"


def _toml_key(k: str) -> str:
    return k if BARE_KEY.match(k) else _toml_str(k)


def to_toml(doc: dict[str, Any]) -> bytes:
    """The generated subset as TOML: top-level keys with inline tables and arrays."""
    text = "\n".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in doc.items()) + "\n"
    return DEEP_TOKEN.sub(_nest, text).encode("utf-8", "surrogatepass")


def to_json(doc: dict[str, Any], ascii_only: bool) -> bytes:
    text = json.dumps(doc, allow_nan=True, ensure_ascii=ascii_only)
    return DEEP_TOKEN.sub(_nest, text).encode("utf-8", "surrogatepass")


# --- the path every input takes ------------------------------------------------------------------

COUNTS: Counter[str] = Counter()
#: pandas (and pyarrow, dateutil, pytz, tzdata under it) read csv: and parquet: files
ALLOWED_TOPS = {"sklearn", "scipy", "numpy", "joblib", "threadpoolctl", "pandas", "pyarrow",
                "dateutil", "pytz", "tzdata", "six"}


@pytest.fixture(scope="module")
def place(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A jobs folder with data files good and bad, and marker modules on sys.path."""
    root = tmp_path_factory.mktemp("hostile")
    jobs = root / "jobs"
    jobs.mkdir()
    (jobs / "ok.csv").write_text("a,b,y\n1,2,0\n3,4,1\n5,6,0\n7,8,1\n9,1,0\n2,2,1\n")
    (jobs / "binary.csv").write_bytes(random.Random(0).randbytes(3000))
    shutil.copy(REPO / "jobs" / "data" / "mixed.csv", jobs / "mixed.csv")
    (jobs / "sub").mkdir()
    os.mkfifo(jobs / "fifo.csv")
    import numpy as np
    np.savez(jobs / "data.npz", X=np.arange(20.0).reshape(10, 2), y=np.arange(10) % 2)
    raw = (jobs / "data.npz").read_bytes()
    (jobs / "cut.npz").write_bytes(raw[: len(raw) // 2])
    (jobs / "empty.npz").write_bytes(b"")
    markers = root / "markers"
    markers.mkdir()
    mods = root / "mods"
    (mods / "evil_marker_pkg").mkdir(parents=True)
    payload = ("from pathlib import Path\n"
               f"Path({str(markers)!r}, __name__).write_text('imported')\nThing = object\n")
    for rel in ("evil_marker_mod.py", "evil_marker_pkg/__init__.py", "evil_marker_pkg/sub.py"):
        (mods / rel).write_text(payload)
    sys.path.insert(0, str(mods))
    # Warm up what the daemon imports for any job, so that what a job makes it import shows.
    warm = parse_job(DIGITS.encode(), jobs / "warm.toml", MAX_CANDIDATES)
    for m in warm.models:
        check_model(warm, m, ())
    load_dataset(warm, is_classification(warm, ()))
    try:
        yield jobs
    finally:
        sys.path.remove(str(mods))
        for name in EVIL_MODULES:
            sys.modules.pop(name, None)
        counts = dict(sorted(COUNTS.items()))
        (tmp_path_factory.getbasetemp() / "hostile_counts.json").write_text(
            json.dumps(counts, indent=1))
        print("\nhostile job inputs:", json.dumps(counts))


def _strings(node: Any, out: set[str]) -> set[str]:
    if isinstance(node, str):
        out.add(node)
    elif isinstance(node, dict):
        for k, v in node.items():
            out.add(str(k))
            _strings(v, out)
    elif isinstance(node, list):
        for v in node:
            _strings(v, out)
    return out


def _cheap_data(spec: Any) -> bool:
    """Whether loading this job's data costs milliseconds (generators with small sizes)."""
    if not spec.data.source.startswith("sklearn:make_"):
        return True
    flat = json.dumps(dict(spec.data.params))
    return all(abs(int(n)) <= 500 for n in re.findall(r"-?\d+", flat)) and len(flat) < 300


def feed(raw: bytes, path: Path, named: frozenset[str] | set[str] = frozenset(),
         kind: str = "fixed") -> str:
    """What the daemon and its worker do with one job file; returns the outcome.

    Only JobSpecError/DataError may escape the checks, as one line starting with the path;
    any other exception fails the test (and is counted as a crash first).
    """
    before = set(sys.modules)
    COUNTS["inputs"] += 1
    try:
        outcome = _stages(raw, path)
    except BaseException:
        COUNTS["crashes"] += 1
        raise
    finally:
        new = set(sys.modules) - before
        outside = {m for m in new if m.split(".")[0] not in ALLOWED_TOPS
                   and m.split(".")[0] not in sys.stdlib_module_names}
        # a module the job names is never imported to find out what it is
        named_new = {m for s in named for m in (s, s.rpartition(".")[0]) if m in new}
        test_modules = {m for m in new if ".tests" in m or "conftest" in m
                        or m.startswith("sklearn.experimental")}
        if outside or named_new or test_modules:
            COUNTS["imports outside the allow-list"] += 1
    assert not outside, f"imported outside the allow-list: {sorted(outside)}"
    assert not named_new, f"imported a module the job names: {sorted(named_new)}"
    assert not test_modules, f"imported test or experimental modules: {sorted(test_modules)}"
    COUNTS[outcome] += 1
    COUNTS[f"{kind}: {outcome}"] += 1
    return outcome


def _stages(raw: bytes, path: Path) -> str:
    try:
        spec = parse_job(raw, path, MAX_CANDIDATES)
    except JobSpecError as e:
        _check_message(e, path)
        return "invalid (supervisor)"
    try:
        templates = {m.name: check_model(spec, m, ()) for m in spec.models}  # JobRun.prepare
        classification = is_classification(spec, ())
        data = load_dataset(spec, classification) if _cheap_data(spec) else None
    except (JobSpecError, DataError) as e:
        _check_message(e, path)
        return "invalid (worker)"
    # Past the checks, what the worker does before any fit must not raise either: a
    # raise there kills the worker at every start (a raise in fit is an error_score).
    if data is not None:
        splits(spec, data.X_train, data.y_train, classification)
    for m in spec.models:
        res = new_results(spec, m, "data-digest")
        Scoring(spec, templates[m.name])
        for i in range(min(len(res.params), 20)):
            params = build_candidate(res.params[i], spec, (), m.name)
            clone(templates[m.name]).set_params(**clone(params, safe=False))
    return "accepted" if data is not None else "accepted (data not loaded)"


def _check_message(e: Exception, path: Path) -> None:
    msg = str(e)
    assert msg.startswith(f"{path}: "), msg[:500]
    assert "\n" not in msg and len(msg) < 2_000, msg[:2_000]


def _no_markers(jobs: Path) -> None:
    markers = list((jobs.parent / "markers").iterdir())
    assert not markers, f"a marker module was imported: {markers}"
    assert not any(m in sys.modules for m in EVIL_MODULES)


FUZZ = settings(deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.filter_too_much])


# --- property tests ------------------------------------------------------------------------------

def test_the_seeds_are_valid_jobs(place: Path) -> None:
    for name, text in SEEDS.items():
        assert feed(text.encode(), place / f"{name}.toml") == "accepted", name
        assert feed(to_json(SEED_DOCS[name], True), place / f"{name}.json") == "accepted", name
        assert feed(to_toml(SEED_DOCS[name]), place / f"{name}.toml") == "accepted", name


def _documents(n: int) -> Callable[..., None]:
    @settings(FUZZ, max_examples=n)
    @given(doc=mutated_docs(), fmt=st.sampled_from(["json", "json-ascii", "toml"]))
    def test(place: Path, doc: dict[str, Any], fmt: str) -> None:
        raw = to_toml(doc) if fmt == "toml" else to_json(doc, ascii_only=fmt == "json-ascii")
        feed(raw, place / ("fuzz.toml" if fmt == "toml" else "fuzz.json"),
             _strings(doc, set()), kind="documents")
        _no_markers(place)
    return test


# the README's test command tries a sample; the extended tier, the 3,000 RELIABILITY.md counts
test_a_sample_of_mutated_documents_is_accepted_or_invalid = _documents(500)
test_mutated_documents_are_accepted_or_invalid = pytest.mark.slow(_documents(3_000))


INVALID_UTF8 = [b"\xff", b"\xfe\xff", b"\xc3\x28", b"\xe2\x82", b"\xed\xa0\x80", b"\xc0\xaf",
                b"\xf4\x90\x80\x80", b"\x80", b"\x00", b"\xef\xbb\xbf"]


@st.composite
def mangled_bytes(draw: st.DrawFn) -> bytes:
    base = draw(st.sampled_from(sorted(SEEDS)))
    raw = bytearray(SEEDS[base].encode() if draw(st.booleans())
                    else to_json(SEED_DOCS[base], True))
    for _ in range(draw(st.integers(1, 5))):
        op = draw(st.sampled_from(["truncate", "flip", "insert", "splice", "repeat", "utf16"]))
        at = draw(st.integers(0, len(raw)))
        if op == "truncate":
            del raw[at:]
        elif op == "flip" and raw:
            i = min(at, len(raw) - 1)
            raw[i] = draw(st.integers(0, 255))
        elif op == "insert":
            raw[at:at] = draw(st.one_of(st.sampled_from(INVALID_UTF8), st.binary(max_size=8)))
        elif op == "splice":
            raw[at:at + draw(st.integers(0, 20))] = draw(st.binary(max_size=20))
        elif op == "repeat":
            raw[at:at] = raw[at:at + 40] * draw(st.integers(1, 50))
        elif op == "utf16":
            return bytes(raw).decode("latin-1").encode("utf-16")
    return bytes(raw)


def _bytes(n: int) -> Callable[..., None]:
    @settings(FUZZ, max_examples=n)
    @given(raw=st.one_of(st.binary(max_size=3_000), mangled_bytes()),
           suffix=st.sampled_from([".toml", ".json"]))
    def test(place: Path, raw: bytes, suffix: str) -> None:
        feed(raw, place / f"raw{suffix}", kind="bytes")
        _no_markers(place)
    return test


test_a_sample_of_raw_bytes_is_accepted_or_invalid = _bytes(400)
test_raw_bytes_are_accepted_or_invalid = pytest.mark.slow(_bytes(2_000))


@pytest.mark.parametrize("raw, suffix, reason", [
    (b"a = " + b"[" * 10_000 + b"]" * 10_000, ".toml", "nested deeper than 32 levels"),
    (b'{"a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", ".json", "nested deeper than 32"),
    (b"a = " + b"{b=" * 5_000 + b"1" + b"}" * 5_000, ".toml", "nested deeper than 32 levels"),
    (b'{"priority": ' + b"9" * 5_000 + b"}", ".json", "an integer has more than 4,300 digits"),
    (b"priority = " + b"9" * 5_000, ".toml", "an integer has more than 4,300 digits"),
    (b" " * (MAX_JOB_BYTES + 1), ".toml", "more than a job file may have"),
    (b"\xef\xbb\xbf" + IRIS.encode(), ".toml", None),  # a UTF-8 byte-order mark is fine
])
def test_extreme_inputs(place: Path, raw: bytes, suffix: str, reason: str | None) -> None:
    path = place / f"extreme{suffix}"
    if reason is None:
        assert feed(raw, path) == "accepted"
        return
    with pytest.raises(JobSpecError) as e:
        parse_job(raw, path, MAX_CANDIDATES)
    assert str(e.value).startswith(f"{path}: ") and reason in str(e.value)
    assert feed(raw, path) == "invalid (supervisor)"


def test_deep_values_within_the_parsers_reach_are_refused_before_recursing(place: Path) -> None:
    doc = {"data": {"source": "sklearn:iris"}, "models": {"m": {
        "estimator": "SVC", "params": {"C": deep(MAX_DEPTH * 20)}}}}
    with pytest.raises(JobSpecError, match=r"models\.m\.params\.C(\[0\])+: nested deeper than"):
        parse_job(to_json(doc, True), place / "deep.json", MAX_CANDIDATES)


# --- the real daemon -----------------------------------------------------------------------------

def _job(model: str = 'estimator = "KNeighborsClassifier"\ngrid = { n_neighbors = [1, 3] }',
         data: str = 'source = "sklearn:iris"', search: str = "cv = 3",
         extra: str = "") -> str:
    return f"[data]\n{data}\n[search]\n{search}\n{extra}[models.m]\n{model}\n"


def _est(name: str) -> str:
    return _job(f'estimator = "{name}"')


#: file name → (content, what the reason must say); invalid in the supervisor (no worker)
SUPERVISOR: dict[str, tuple[bytes, str]] = {
    "binary.toml": (random.Random(1).randbytes(4096), "not UTF-8 text"),
    "latin1.json": (('{"data": {"source": "sklearn:iris"}, "models": {"m": {"estimator": '
                     '"SVC", "params": {"kernel": "caf\xe9"}}}}').encode("latin-1"),
                    "not UTF-8 text"),
    "truncated.toml": (_job().encode()[:-20], "not valid TOML"),
    "utf16.json": (json.dumps(SEED_DOCS["iris"]).encode("utf-16"), "not UTF-8 text"),
    "deep.json": (b'{"data": {"source": "sklearn:iris"}, "models": {"m": {"estimator": "SVC", '
                  b'"params": {"C": ' + b"[" * 10_000 + b"]" * 10_000 + b"}}}}",
                  "not valid JSON: nested deeper than 32 levels"),
    "deep_toml.toml": (_job('estimator = "SVC"\nparams = { C = ' + "[" * 10_000 + "]" * 10_000
                       + " }").encode(), "not valid TOML: nested deeper than 32 levels"),
    "deep40.json": (b'{"data": {"source": "sklearn:iris"}, "models": {"m": {"estimator": "SVC", '
                    b'"params": {"C": ' + b"[" * 40 + b"]" * 40 + b"}}}}",
                    "models.m.params.C[0][0]"),
    "grid_1e12.toml": (_job('estimator = "SVC"\ngrid = { C = { range = [1000000] }, '
                            'gamma = { range = [1000000] } }').encode(),
                       "the grids expand to 1,000,000,000,000 candidates"),
    "grid_1e400.json": (json.dumps({"data": {"source": "sklearn:iris"}, "models": {"m": {
        "estimator": "SVC", "grid": {f"p{i}": {"range": [10**40]} for i in range(10)}}}}
    ).encode(), "the grids expand to more than 10^100 candidates"),
    "hugeint.json": (b'{"priority": ' + b"7" * 5_000 + b"}", "an integer has more than 4,300"),
    "nan.json": (b'{"data": {"source": "sklearn:iris"}, "models": {"m": {"estimator": "SVC", '
                 b'"grid": {"C": [1.0, NaN]}}}}', "m.grid.C[1]: expected a finite number, got nan"),
    "inf_range.toml": (_job('estimator = "SVC"\ngrid = { C = { range = [0, inf] } }').encode(),
                       "range: expected finite numbers"),
    "dunder_param.toml": (_job('estimator = "SVC"\nparams = { __class__ = 1 }').encode(),
                          "models.m.params.__class__: '__class__' is not a parameter name"),
    "dunder_grid.toml": (_job('estimator = "SVC"\ngrid = { __reduce__ = [1] }').encode(),
                         "models.m.grid.__reduce__: '__reduce__' is not a parameter name"),
    "dunder_model.toml": (_job().replace("[models.m]", "[models.__init__]").encode(),
                          "models.__init__: a model type's name uses"),
    "seed.toml": (_job(search="cv = { folds = 3, shuffle = true, seed = -1 }").encode(),
                  "search.cv.seed: expected a seed from 0 to 4294967295, got -1"),
    "step_memory.toml": (_job(extra='[[preprocess]]\nname = "memory"\n'
                              'estimator = "StandardScaler"\n').encode(),
                         "preprocess[0].name: 'memory' is not a usable step name"),
    "not_object.json": (b"[1, 2, 3]", "expected a JSON object at the top level"),
    "empty.toml": (b"", "data: missing (a table is required)"),
}

#: file name → (content, what the reason must say); invalid in the worker (allow-list, data)
WORKER: dict[str, tuple[str, str]] = {
    "os_system.toml": (_est("os.system"), "estimator 'os.system': module 'os' is not allowed"),
    "popen.toml": (_est("subprocess.Popen"), "module 'subprocess' is not allowed"),
    "eval.toml": (_est("builtins.eval"), "module 'builtins' is not allowed"),
    "pickle.toml": (_est("pickle.loads"), "module 'pickle' is not allowed"),
    "importlib.toml": (_est("importlib.import_module"), "module 'importlib' is not allowed"),
    "private.toml": (_est("sklearn.svm._classes.SVC"), "names a private or invalid module"),
    "sklearn_tests.toml": (_est("sklearn.tests.test_base.T"),
                           "'sklearn.tests.test_base.T' is not a public scikit-learn estimator"),
    "marker.toml": (_est("evil_daemon_marker.Thing"), "module 'evil_daemon_marker' is not"),
    "nested_est.toml": (_job('estimator = "BaggingClassifier"\n'
                             'params = { estimator = { estimator = "os.system" } }'),
                        "models.m.params.estimator.estimator: estimator 'os.system'"),
    "grid_est.toml": (_job('estimator = "BaggingClassifier"\n'
                           'grid = { estimator = [{ estimator = "pickle.loads" }] }'),
                      "models.m.grid.estimator[0].estimator: estimator 'pickle.loads'"),
    "step_est.toml": (_job(extra='[[preprocess]]\nname = "s"\nestimator = "subprocess.run"\n'),
                      "preprocess.s.estimator: estimator 'subprocess.run'"),
    "unknown_param.toml": (_job('estimator = "SVC"\ngrid = { c = [1] }'),
                           "models.m.grid.c: SVC has no parameter 'c'"),
    "nested_param.toml": (_job('estimator = "KNeighborsClassifier"\n'
                               'params = { metric__x = 1 }'),
                          "models.m.params.metric__x: KNeighborsClassifier has no parameter"),
    "csv_missing.toml": (_job(data='source = "csv:nope.csv"\ntarget = "y"'),
                         "nope.csv: No such file or directory"),
    "csv_binary.toml": (_job(data='source = "csv:binary.bin"\ntarget = "y"'),
                        "binary.bin: not UTF-8 text"),
    "csv_dir.toml": (_job(data='source = "csv:."\ntarget = "y"'), ": Is a directory"),
    "csv_zero.toml": (_job(data='source = "csv:/dev/zero"\ntarget = "y"'),
                      "/dev/zero: data files are read only from the job's folder"),
    "csv_fifo.toml": (_job(data='source = "csv:fifo.pipe"\ntarget = "y"'),
                      "fifo.pipe: not a regular file"),
    "npz_cut.toml": (_job(data='source = "npz:cut.npz"'), "cut.npz: not a readable .npz file"),
    "sparse.toml": (_job(data='source = "sklearn:make_multilabel_classification"\n'
                         'params = { sparse = true }'), "X must be a 2-D"),
}


#: the WORKER cases that also go through a real daemon (each costs a worker start, ~2 s):
#: an import attempt, a nested one, and data files that are not what they claim
THROUGH_DAEMON = ("os_system.toml", "marker.toml", "nested_est.toml", "csv_fifo.toml",
                  "npz_cut.toml", "sparse.toml")


def _worker_files(folder: Path) -> None:
    """The data files the WORKER corpus names, beside the job files."""
    (folder / "binary.bin").write_bytes(random.Random(2).randbytes(5000))
    os.mkfifo(folder / "fifo.pipe")
    import numpy as np
    np.savez(folder / "d.npz", X=np.zeros((10, 2)), y=np.zeros(10))
    (folder / "cut.npz").write_bytes((folder / "d.npz").read_bytes()[:100])
    (folder / "d.npz").unlink()


@pytest.fixture(scope="module")
def worker_place(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("worker-corpus")
    _worker_files(folder)
    return folder


@pytest.mark.parametrize("name", sorted(WORKER))
def test_the_worker_corpus_is_invalid_with_its_reason(worker_place: Path, name: str) -> None:
    """What the worker's checks say about each (in this process: the daemon runs a sample)."""
    text, reason = WORKER[name]
    path = worker_place / name
    path.write_text(text)
    try:
        spec = parse_job(text.encode(), path, MAX_CANDIDATES)
        with pytest.raises((JobSpecError, DataError)) as e:
            for m in spec.models:
                check_model(spec, m, ())
            load_dataset(spec, is_classification(spec, ()))
    finally:
        path.unlink()
    _check_message(e.value, path)
    assert reason in str(e.value)
    assert "evil_daemon_marker" not in sys.modules


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_the_daemon_survives_a_hostile_jobs_folder(env: Env, tmp_path: Path) -> None:
    jobs = env.jobs
    marker = tmp_path / "marker-imported"
    (env.root / "evil_daemon_marker.py").write_text(  # the worker's cwd is on its sys.path
        f"from pathlib import Path\nPath({str(marker)!r}).write_text('x')\nThing = object\n")
    _worker_files(jobs)
    for name, (raw, _) in SUPERVISOR.items():
        (jobs / name).write_bytes(raw)
    worker = {name: WORKER[name] for name in THROUGH_DAEMON}
    for name, (text, _) in worker.items():
        (jobs / name).write_text(text)
    # 50 MB: a valid job followed by a giant comment; refused without being read
    with open(jobs / "big.toml", "wb") as f:
        f.write(_job().encode())
        f.write(b"# " + b"x" * (50 << 20) + b"\n")
    # links: to a good job outside jobs/, and to a file whose content must not leak
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "good.toml").write_text(_job())
    (jobs / "link.toml").symlink_to(outside / "good.toml")
    (jobs / "passwd.toml").symlink_to("/etc/passwd")
    (jobs / "dangling.json").symlink_to(tmp_path / "nowhere.json")
    (jobs / "dir.toml").mkdir()
    os.mkfifo(jobs / "fifo.toml")
    links = {"link.toml": "is a symbolic link", "passwd.toml": "is a symbolic link",
             "dangling.json": "is a symbolic link", "big.toml": "bytes is more than a job file",
             "dir.toml": "cannot read: Is a directory", "fifo.toml": "not a regular file"}
    # names that cannot be job ids: ignored, and the log says why
    ignored = {"..toml": "hidden file", ".hidden.toml": "hidden file",
               "with space.toml": "job id 'with space' may only use",
               "dup.toml": "job id 'dup' is already used by dup.json"}
    for name in ignored:
        (jobs / name).write_text(_job())
    (jobs / "dup.json").write_bytes(to_json(SEED_DOCS["iris"], True))
    # beside them: a good job, and one whose fits raise for one candidate (not invalid)
    (jobs / "good.toml").write_text(_job())
    (jobs / "fit_raises.toml").write_text(_job('estimator = "SVC"\ngrid = { C = [-1.0, 1.0] }'))

    run = env.cli("run", "--drain", timeout=200)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "Traceback" not in run.stderr, run.stderr[-5000:]
    status = {r["id"]: r for r in json.loads(env.cli("status", "--json", check=True).stdout)}
    for job in ("good", "dup", "fit_raises"):
        assert status[job]["state"] == "done", status[job]
    show = json.loads(env.cli("show", "fit_raises", "--json", check=True).stdout)
    cv = show["models"]["m"]["cv_results"]
    assert cv["params"] == [{"C": -1.0}, {"C": 1.0}]
    assert cv["mean_test_score"][0] is None and cv["mean_test_score"][1] > 0.9  # NaN, like GSCV
    assert show["models"]["m"]["errors"] == 3
    expected = {**SUPERVISOR, **worker, **{n: (b"", r) for n, r in links.items()}}
    for name, (_, reason) in expected.items():
        rec = status[name.rsplit(".", 1)[0]]
        assert rec["state"] == "invalid", (name, rec)
        assert rec["error"].startswith(f"{jobs / name}: "), (name, rec["error"])
        assert reason in rec["error"], (name, rec["error"])
        assert "\n" not in rec["error"] and len(rec["error"]) < 2_000
    for name, reason in ignored.items():
        assert re.search(rf"{re.escape(str(jobs / name))}: ignored: .*{re.escape(reason)}",
                         run.stderr), (name, run.stderr[-3000:])
    assert not marker.exists()  # the named module was never imported
    passwd_first = Path("/etc/passwd").read_text().split("\n", 1)[0]
    assert passwd_first not in json.dumps(status) and passwd_first not in run.stderr
    # the accounting matches: every file is a job or an ignored name
    assert len(status) == len(expected) + 3
    COUNTS["daemon corpus files"] += len(expected) + len(ignored) + 3
