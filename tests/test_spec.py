"""Job files → JobSpec (searchd.jobs.spec) and a job's data (searchd.worker.data).

Every error test asserts on the message: it must name the file, the key and the value.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from searchd.errors import DataError, JobSpecError
from searchd.jobs import grids
from searchd.jobs.ids import job_id_of
from searchd.jobs.load import load_job, parse_job
from searchd.jobs.spec import JobSpec, canonical
from searchd.worker.data import load_dataset, load_xy

X_TOML = Path("jobs/x.toml")
X_JSON = Path("jobs/x.json")

MINIMAL = """
[data]
source = "sklearn:iris"

[models.knn]
estimator = "KNeighborsClassifier"
"""


def parse(text: str, path: Path = X_TOML, max_candidates: int = 100_000) -> JobSpec:
    return parse_job(text.encode(), path, max_candidates)


def error(text: str, path: Path = X_TOML, max_candidates: int = 100_000) -> str:
    with pytest.raises(JobSpecError) as e:
        parse(text, path, max_candidates)
    return str(e.value)


def with_grid(grid: str, estimator: str = "KNeighborsClassifier") -> str:
    return f'[data]\nsource = "sklearn:iris"\n[models.knn]\nestimator = "{estimator}"\n' \
           f"grid = {grid}\n"


def as_json(doc: dict[str, Any]) -> str:
    return json.dumps(doc)


# --- TOML and JSON ----------------------------------------------------------------------------

FULL_TOML = """
priority = 3

[data]
source = "sklearn:make_classification"
params = { n_samples = 80, n_features = 6, random_state = 1 }
test_size = 0.25
seed = 7

[search]
cv = { folds = 4, shuffle = true, seed = 11 }
scoring = ["accuracy", "f1_macro"]
refit = "f1_macro"
n_jobs = 2

[[preprocess]]
name = "scale"
estimator = "StandardScaler"
params = { with_mean = false }

[models.knn]
estimator = "KNeighborsClassifier"
grid = { n_neighbors = { range = [1, 10, 2] }, weights = ["uniform", "distance"] }

[models.tree]
estimator = "sklearn.tree.DecisionTreeClassifier"
params = { random_state = 0, max_depth = { none = true } }
grid = [
  { min_samples_leaf = { linspace = [0.1, 0.3, 3] } },
  { max_depth = [2, { none = true }], ccp_alpha = { logspace = [-3, -1, 3] } },
]

[models.bag]
estimator = "BaggingClassifier"
params = { estimator = { estimator = "DecisionTreeClassifier", params = { max_depth = 2 } } }
grid = [
  { n_estimators = [3, 5] },
  { estimator = [{ estimator = "DecisionTreeClassifier", params = { max_depth = 1 } },
                 { estimator = "LogisticRegression" }] },
]
"""

FULL_JSON = {
    "priority": 3,
    "data": {"source": "sklearn:make_classification",
             "params": {"n_samples": 80, "n_features": 6, "random_state": 1},
             "test_size": 0.25, "seed": 7},
    "search": {"cv": {"folds": 4, "shuffle": True, "seed": 11},
               "scoring": ["accuracy", "f1_macro"], "refit": "f1_macro", "n_jobs": 2},
    "preprocess": [{"name": "scale", "estimator": "StandardScaler",
                    "params": {"with_mean": False}}],
    "models": {
        "knn": {"estimator": "KNeighborsClassifier",
                "grid": {"n_neighbors": {"range": [1, 10, 2]},
                         "weights": ["uniform", "distance"]}},
        "tree": {"estimator": "sklearn.tree.DecisionTreeClassifier",
                 "params": {"random_state": 0, "max_depth": None},
                 "grid": [{"min_samples_leaf": {"linspace": [0.1, 0.3, 3]}},
                          {"max_depth": [2, None], "ccp_alpha": {"logspace": [-3, -1, 3]}}]},
        "bag": {"estimator": "BaggingClassifier",
                "params": {"estimator": {"estimator": "DecisionTreeClassifier",
                                         "params": {"max_depth": 2}}},
                "grid": [{"n_estimators": [3, 5]},
                         {"estimator": [{"estimator": "DecisionTreeClassifier",
                                         "params": {"max_depth": 1}},
                                        {"estimator": "LogisticRegression"}]}]},
    },
}


def test_toml_and_json_forms_give_equal_specs() -> None:
    t = parse(FULL_TOML, X_TOML)
    j = parse(as_json(FULL_JSON), X_JSON)
    assert t.path == X_TOML and j.path == X_JSON
    assert t.digest != j.digest
    assert dataclasses.replace(j, path=t.path, digest=t.digest) == t
    assert t.id == j.id == "x"


def test_full_job_fields() -> None:
    s = parse(FULL_TOML)
    assert s.priority == 3
    assert s.data.source == "sklearn:make_classification"
    assert s.data.params == {"n_samples": 80, "n_features": 6, "random_state": 1}
    assert (s.data.test_size, s.data.seed, s.data.base_dir) == (0.25, 7, Path("jobs"))
    assert (s.search.folds, s.search.shuffle, s.search.cv_seed) == (4, True, 11)
    assert s.search.scoring == ("accuracy", "f1_macro")
    assert s.search.refit == "f1_macro" and s.search.multimetric
    assert s.search.n_jobs == 2 and s.search.backend == "local"
    assert [(p.name, p.estimator, dict(p.params)) for p in s.preprocess] == [
        ("scale", "StandardScaler", {"with_mean": False})]
    assert [m.name for m in s.models] == ["knn", "tree", "bag"]
    knn, tree, bag = s.models
    assert knn.grid == ({"n_neighbors": [1, 3, 5, 7, 9], "weights": ["uniform", "distance"]},)
    assert knn.n_candidates == 10
    assert tree.params == {"random_state": 0, "max_depth": None}
    assert len(tree.grid) == 2 and tree.n_candidates == 3 + 2 * 3
    assert tree.grid[1]["max_depth"] == [2, None]
    assert bag.params == {"estimator": {"estimator": "DecisionTreeClassifier",
                                        "params": {"max_depth": 2}}}
    assert bag.grid[1]["estimator"] == [
        {"estimator": "DecisionTreeClassifier", "params": {"max_depth": 1}},
        {"estimator": "LogisticRegression", "params": {}}]
    assert bag.n_candidates == 4
    assert s.n_candidates == 10 + 9 + 4
    assert s.fits_total == 23 * 4
    assert s.model("tree") is tree
    with pytest.raises(KeyError):
        s.model("svm")


def test_digest_is_sha256_of_the_bytes() -> None:
    raw = MINIMAL.encode()
    assert parse_job(raw, X_TOML, 10).digest == hashlib.sha256(raw).hexdigest()


def test_defaults() -> None:
    s = parse(MINIMAL)
    assert s.priority == 0
    assert s.data.test_size is None and s.data.seed == 0 and s.data.target is None
    assert (s.search.folds, s.search.shuffle, s.search.cv_seed) == (5, False, None)
    assert s.search.scoring is None and s.search.refit is None and not s.search.multimetric
    assert s.preprocess == ()
    # no grid: the one candidate of the fixed parameters
    assert s.models[0].grid == ({},) and s.n_candidates == 1


def test_spec_pickles() -> None:
    s = parse(FULL_TOML)
    assert pickle.loads(pickle.dumps(s)) == s


def test_job_id_is_the_file_name_without_extension() -> None:
    assert job_id_of(Path("jobs/a.b-c_1.toml")) == "a.b-c_1"
    assert job_id_of(Path("jobs/plain")) == "plain"
    assert parse(MINIMAL, Path("jobs/a.b-c_1.toml")).id == "a.b-c_1"
    assert parse_job(MINIMAL.encode(), X_TOML, 10, job_id="other").id == "other"


# --- None -------------------------------------------------------------------------------------

def test_none_in_toml_and_json() -> None:
    t = parse(with_grid('{ leaf_size = [10, { none = true }] }') +
              'params = { metric_params = { none = true } }\n')
    j = parse(as_json({"data": {"source": "sklearn:iris"},
                       "models": {"knn": {"estimator": "KNeighborsClassifier",
                                          "params": {"metric_params": None},
                                          "grid": {"leaf_size": [10, None]}}}}), X_JSON)
    for s in (t, j):
        assert s.models[0].params == {"metric_params": None}
        assert s.models[0].grid == ({"leaf_size": [10, None]},)


def test_none_false_is_an_error() -> None:
    assert error(with_grid('{ leaf_size = [{ none = false }] }')) == \
        "jobs/x.toml: models.knn.grid.leaf_size[0]: write None as {none = true}"


# --- value helpers ----------------------------------------------------------------------------

@pytest.mark.parametrize("helper, expected", [
    ("{ range = [1, 10, 2] }", [1, 3, 5, 7, 9]),
    ("{ range = [5] }", [0, 1, 2, 3, 4]),
    ("{ range = [2, 5] }", [2, 3, 4]),
    ("{ range = [10, 0, -3] }", [10, 7, 4, 1]),
    ("{ range = [0, 1, 0.25] }", np.arange(0, 1, 0.25)),
    ("{ range = [0.5, 2] }", np.arange(0.5, 2)),
    ("{ linspace = [0, 1, 5] }", np.linspace(0, 1, 5)),
    ("{ linspace = [-2.5, 7, 11] }", np.linspace(-2.5, 7, 11)),
    ("{ linspace = [3, 4, 1] }", np.linspace(3, 4, 1)),
    ("{ logspace = [-3, 1, 5] }", np.logspace(-3, 1, 5)),
    ("{ logspace = [0, 2.5, 6] }", np.logspace(0, 2.5, 6)),
])
def test_value_helpers_expand_like_python_and_numpy(helper: str, expected: Any) -> None:
    model = parse(with_grid(f"{{ p = {helper} }}")).models[0]
    values = model.grid[0]["p"]
    assert isinstance(values, list)
    assert len(values) == len(expected) == model.n_candidates
    assert np.allclose(values, expected)
    if isinstance(expected, list):  # int ranges stay ints (n_neighbors must be an int)
        assert values == expected and all(type(v) is int for v in values)


def test_helpers_in_json() -> None:
    doc = {"data": {"source": "sklearn:iris"},
           "models": {"knn": {"estimator": "KNeighborsClassifier",
                              "grid": {"a": {"range": [1, 10, 2]},
                                       "b": {"logspace": [-3, 1, 5]}}}}}
    m = parse(as_json(doc), X_JSON).models[0]
    assert m.grid[0]["a"] == [1, 3, 5, 7, 9]
    assert np.allclose(m.grid[0]["b"], np.logspace(-3, 1, 5))
    assert m.n_candidates == 25


@pytest.mark.parametrize("helper, message", [
    ("{ range = [5, 1] }", "{range = [5, 1]} gives no values"),
    ("{ range = [0, 10, -1] }", "{range = [0, 10, -1]} gives no values"),
    ("{ range = [1, 2, 0] }", "range: step must not be 0"),
    ("{ range = [] }", "range: expected [stop], [start, stop] or [start, stop, step], got []"),
    ("{ range = [1, 2, 3, 4] }", "range: expected [stop], [start, stop] or [start, stop, step]"),
    ('{ range = ["a", 2] }', "range: expected a list of numbers, got ['a', 2]"),
    ("{ range = [true, 2] }", "range: expected a list of numbers, got [True, 2]"),
    ("{ range = 5 }", "range: expected a list of numbers, got 5"),
    ("{ linspace = [0, 1] }", "linspace: expected [start, stop, count], got [0, 1]"),
    ("{ linspace = [0, 1, 2.5] }", "linspace: expected [start, stop, count], got [0, 1, 2.5]"),
    ("{ linspace = [0, 1, 0] }", "{linspace = [0, 1, 0]} gives no values"),
    ("{ logspace = [0, 1, -3] }", "{logspace = [0, 1, -3]} gives no values"),
    ("{ range = [0, nan] }", "range: expected finite numbers, got [0, nan]"),
    ("{ linspace = [0, inf, 3] }", "linspace: expected finite numbers, got [0, inf, 3]"),
    ("{ logspace = [0, 400, 2] }", "logspace: expected finite numbers, got [0, 400, 2]"),
    ("{ range = [0, 1e308, 1e-308] }", "does not give a finite number of values"),
    ("{ range = [1, 3], step = 1 }", "expected a list or a range, got {range = [1, 3], step = 1}"),
    ("{ arange = [1, 3] }", "expected a list or a range, got {arange = [1, 3]}"),
    ("[]", "an empty list gives no candidates"),
    ('"abc"', 'expected a list or a range, got "abc"'),
])
def test_bad_grid_values(helper: str, message: str) -> None:
    msg = error(with_grid(f"{{ p = {helper} }}"))
    assert msg.startswith("jobs/x.toml: models.knn.grid.p: "), msg
    assert message in msg


def test_grid_scalar_message_is_exact() -> None:
    assert error(with_grid("{ n_neighbors = 5 }")) == \
        "jobs/x.toml: models.knn.grid.n_neighbors: expected a list or a range, got 5"


def test_helper_outside_a_grid_is_an_error() -> None:
    msg = error(with_grid("{}") + "params = { n_neighbors = { range = [1, 3] } }\n")
    assert msg == "jobs/x.toml: models.knn.params.n_neighbors: a range helper can only give " \
                  "a grid's values"


def test_non_finite_and_odd_values() -> None:
    assert error(with_grid("{ p = [1.0, nan] }")) == \
        "jobs/x.toml: models.knn.grid.p[1]: expected a finite number, got nan"
    msg = error(with_grid("{ p = [{ colour = 1 }] }"))
    assert msg == "jobs/x.toml: models.knn.grid.p[0]: expected a value, {none = true} or " \
                  "{estimator = ...}, got {colour = 1}"
    msg = error(with_grid("{ p = [1979-05-27] }"))
    assert msg.startswith("jobs/x.toml: models.knn.grid.p[0]: unsupported value ")
    assert "1979" in msg


# --- lists of grids and estimator-valued parameters --------------------------------------------

def test_list_of_grids() -> None:
    m = parse(with_grid('[{ n_neighbors = [1, 2, 3], weights = ["uniform", "distance"] }, '
                        '{ n_neighbors = { range = [4] }, p = [1] }]')).models[0]
    assert m.grid == ({"n_neighbors": [1, 2, 3], "weights": ["uniform", "distance"]},
                      {"n_neighbors": [0, 1, 2, 3], "p": [1]})
    assert m.n_candidates == 6 + 4


def test_list_of_grids_errors_name_the_index() -> None:
    assert error(with_grid("[{ a = [1] }, { b = 5 }]")) == \
        "jobs/x.toml: models.knn.grid[1].b: expected a list or a range, got 5"
    # a bad value found while expanding names its grid too
    assert error(with_grid("[{ a = [1] }, { b = [1, { c = 2 }] }]")) == \
        "jobs/x.toml: models.knn.grid[1].b[1]: expected a value, {none = true} or " \
        "{estimator = ...}, got {c = 2}"
    assert error(with_grid("[{ a = [1] }, 3]")) == \
        "jobs/x.toml: models.knn.grid[1]: expected a table, got 3"
    assert error(with_grid("[]")) == \
        "jobs/x.toml: models.knn.grid: an empty list of grids has no candidates"


def test_estimator_valued_params_in_params_and_grid() -> None:
    s = parse("""
[data]
source = "sklearn:iris"
[models.bag]
estimator = "BaggingClassifier"
params = { estimator = { estimator = "DecisionTreeClassifier", params = { max_depth = 2 } } }
grid = [{ n_estimators = [2] },
        { estimator = [{ estimator = "DecisionTreeClassifier", params = { max_depth = 2 } },
                       { estimator = "GaussianNB" }] }]
""")
    m = s.models[0]
    tree = {"estimator": "DecisionTreeClassifier", "params": {"max_depth": 2}}
    assert m.params == {"estimator": tree}
    assert m.grid[1]["estimator"] == [tree, {"estimator": "GaussianNB", "params": {}}]
    assert m.n_candidates == 3


def test_estimator_value_errors() -> None:
    assert error(with_grid('{ e = [{ estimator = "GaussianNB", colour = 1 }] }')) == \
        "jobs/x.toml: models.knn.grid.e[0].colour: unknown key (expected one of estimator, " \
        "params)"
    assert error(with_grid("{ e = [{ estimator = 3 }] }")) == \
        "jobs/x.toml: models.knn.grid.e[0].estimator: expected a non-empty string, got 3"
    assert error(with_grid('{ e = [{ estimator = "GaussianNB", params = { v = inf } }] }')) \
        == "jobs/x.toml: models.knn.grid.e[0].params.v: expected a finite number, got inf"


# --- search: scoring, refit, cv -----------------------------------------------------------------

def search(body: str) -> str:
    return MINIMAL + "[search]\n" + body + "\n"


def test_single_scorer_is_its_own_refit() -> None:
    s = parse(search('scoring = "accuracy"')).search
    assert s.scoring == ("accuracy",) and s.refit == "accuracy" and not s.multimetric


def test_multimetric_scoring_with_refit() -> None:
    s = parse(search('scoring = ["accuracy", "f1_macro", "roc_auc_ovr"]\n'
                     'refit = "roc_auc_ovr"')).search
    assert s.scoring == ("accuracy", "f1_macro", "roc_auc_ovr")
    assert s.refit == "roc_auc_ovr" and s.multimetric


def test_refit_missing_with_two_scorers() -> None:
    assert error(search('scoring = ["accuracy", "f1_macro"]')) == \
        'jobs/x.toml: search.refit: several scorers need refit = "<name>" to pick the best ' \
        "candidate"


@pytest.mark.parametrize("body, message", [
    ('scoring = ["accuracy"]\nrefit = "f1"',
     "search.refit: 'f1' is not one of the scoring names"),
    ('refit = "accuracy"', "search.refit: 'accuracy' is not one of the scoring names"),
    ('scoring = ["accuracy", "accuracy"]\nrefit = "accuracy"',
     "search.scoring: names a scorer twice: ['accuracy', 'accuracy']"),
    ("scoring = []", "search.scoring: expected a scorer name or a list of names, got []"),
    ("scoring = 3", "search.scoring: expected a scorer name or a list of names, got 3"),
    ('scoring = ["accuracy", 1]',
     "search.scoring: expected a scorer name or a list of names, got ['accuracy', 1]"),
    ("n_jobs = 0", "search.n_jobs: 0 has no meaning (use -1 for all cores)"),
    ('n_jobs = "all"', "search.n_jobs: expected an integer, got 'all'"),
    ('backend = "ray"', "search.backend: expected \"local\" or \"dask\", got 'ray'"),
    ("folds = 3", "search.folds: unknown key (expected one of backend, cv, n_jobs, refit, "
     "scoring)"),
])
def test_bad_search(body: str, message: str) -> None:
    assert error(search(body)) == f"jobs/x.toml: {message}"


def test_cv_as_int_and_as_table() -> None:
    s = parse(search("cv = 3")).search
    assert (s.folds, s.shuffle, s.cv_seed) == (3, False, None)
    s = parse(search("cv = { folds = 7 }")).search
    assert (s.folds, s.shuffle, s.cv_seed) == (7, False, None)
    s = parse(search("cv = { folds = 4, shuffle = true }")).search
    assert (s.folds, s.shuffle, s.cv_seed) == (4, True, 0)
    s = parse(search("cv = { shuffle = true, seed = 42 }")).search
    assert (s.folds, s.shuffle, s.cv_seed) == (5, True, 42)
    assert parse(search("cv = 3")).fits_total == 3


@pytest.mark.parametrize("cv, message", [
    ("1", "search.cv: expected at least 2 folds, got 1"),
    ("-5", "search.cv: expected at least 2 folds, got -5"),
    ('"5"', "search.cv: expected an integer, got '5'"),
    ("5.0", "search.cv: expected an integer, got 5.0"),
    ("true", "search.cv: expected an integer, got True"),
    ("{ folds = 1 }", "search.cv: expected at least 2 folds, got 1"),
    ('{ folds = "3" }', "search.cv.folds: expected an integer, got '3'"),
    ('{ folds = 3, shuffle = "yes" }', "search.cv.shuffle: expected true or false, got 'yes'"),
    ("{ folds = 3, shuffle = true, seed = 1.5 }",
     "search.cv.seed: expected an integer, got 1.5"),
    ("{ folds = 3, stratified = true }",
     "search.cv.stratified: unknown key (expected one of folds, seed, shuffle)"),
])
def test_bad_cv(cv: str, message: str) -> None:
    assert error(search(f"cv = {cv}")) == f"jobs/x.toml: {message}"


# --- data section -------------------------------------------------------------------------------

def data_job(body: str) -> str:
    return f"[data]\n{body}\n[models.knn]\nestimator = \"KNeighborsClassifier\"\n"


@pytest.mark.parametrize("value", ["0.2", "0.999", "1", "30"])
def test_good_test_size(value: str) -> None:
    s = parse(data_job(f'source = "sklearn:iris"\ntest_size = {value}'))
    assert s.data.test_size == json.loads(value)


@pytest.mark.parametrize("value, shown", [
    ("0", "0"), ("0.0", "0.0"), ("1.0", "1.0"), ("1.5", "1.5"), ("-0.2", "-0.2"),
    ("-3", "-3"), ("true", "True"), ('"0.2"', "'0.2'"), ("nan", "nan"), ("inf", "inf"),
])
def test_bad_test_size(value: str, shown: str) -> None:
    assert error(data_job(f'source = "sklearn:iris"\ntest_size = {value}')) == \
        f"jobs/x.toml: data.test_size: expected a fraction in (0, 1) or a count, got {shown}"


@pytest.mark.parametrize("body, message", [
    ('source = "http://example.com/x.csv"',
     "data.source: expected sklearn:<name>, csv:<path>, parquet:<path> or npz:<path>, "
     "got 'http://example.com/x.csv'"),
    ('source = "iris"', "data.source: expected sklearn:<name>, csv:<path>, parquet:<path> or "
     "npz:<path>, got 'iris'"),
    ("source = 3", "data.source: expected a non-empty string, got 3"),
    ("seed = 0", "data.source: expected a non-empty string, got None"),
    ('source = "csv:d.csv"', 'data.target: a csv: source needs target = "<column>"'),
    ('source = "csv:d.csv"\ntarget = ""', "data.target: expected a non-empty string, got ''"),
    ('source = "sklearn:iris"\nseed = 1.5', "data.seed: expected an integer, got 1.5"),
    ('source = "sklearn:iris"\nparams = 3', "data.params: expected a table, got 3"),
    ('source = "sklearn:iris"\nsorce = "x"',
     "data.sorce: unknown key (expected one of drop, features, params, seed, source, target, "
     "test_size)"),
])
def test_bad_data(body: str, message: str) -> None:
    assert error(data_job(body)) == f"jobs/x.toml: {message}"


# --- document shape -----------------------------------------------------------------------------

def test_unknown_top_level_key() -> None:
    assert error("colour = 1\n" + MINIMAL) == \
        "jobs/x.toml: colour: unknown key (expected one of data, models, preprocess, " \
        "priority, search)"


def test_unknown_model_key() -> None:
    assert error(MINIMAL + "grids = { n_neighbors = [1] }\n") == \
        "jobs/x.toml: models.knn.grids: unknown key (expected one of estimator, grid, params, " \
        "search)"


def test_unknown_preprocess_key() -> None:
    assert error(MINIMAL + '[[preprocess]]\nname = "s"\nestimator = "StandardScaler"\n'
                 'colour = 1\n') == \
        "jobs/x.toml: preprocess[0].colour: unknown key (expected one of estimator, name, params)"


def test_toml_syntax_error() -> None:
    msg = error(MINIMAL + "grid = { n_neighbors = [1, 2 }\n")
    assert msg.startswith("jobs/x.toml: not valid TOML: ")
    assert "line 7" in msg and "\n" not in msg


def test_toml_duplicate_key_is_a_syntax_error() -> None:
    assert error(MINIMAL + 'estimator = "SVC"\n').startswith("jobs/x.toml: not valid TOML: ")


def test_json_syntax_error() -> None:
    msg = error('{"data": {"source": "sklearn:iris"},}', X_JSON)
    assert msg.startswith("jobs/x.json: not valid JSON: ")
    assert "line 1" in msg


def test_json_top_level_must_be_an_object() -> None:
    assert error("[1, 2]", X_JSON) == "jobs/x.json: expected a JSON object at the top level"


def test_not_utf8() -> None:
    with pytest.raises(JobSpecError, match=r"^jobs/x\.toml: not UTF-8 text$"):
        parse_job(b"\xff\xfe" + MINIMAL.encode(), X_TOML, 10)


def test_unknown_suffix() -> None:
    assert error(MINIMAL, Path("jobs/x.yaml")) == \
        "jobs/x.yaml: unknown job file type (expected .toml or .json)"


@pytest.mark.parametrize("name", ["bad id.toml", "x$y.json", "über.toml"])
def test_bad_job_id(name: str) -> None:
    jid = name.rsplit(".", 1)[0]
    assert error(MINIMAL, Path("jobs") / name) == \
        f"jobs/{name}: job id {jid!r} may only use letters, digits, '.', '_', '-'"


def test_bad_job_id_given_explicitly() -> None:
    with pytest.raises(JobSpecError, match=r"job id 'a/b' may only use"):
        parse_job(MINIMAL.encode(), X_TOML, 10, job_id="a/b")


def test_models_missing_or_empty() -> None:
    no_models = '[data]\nsource = "sklearn:iris"\n'
    assert error(no_models) == "jobs/x.toml: models: missing (a table is required)"
    assert error(no_models + "[models]\n") == \
        "jobs/x.toml: models: at least one model type is needed"
    assert error(as_json({"data": {"source": "sklearn:iris"}, "models": {}}), X_JSON) == \
        "jobs/x.json: models: at least one model type is needed"
    assert error("models = 3\n" + no_models) == "jobs/x.toml: models: expected a table, got 3"


def test_data_missing() -> None:
    assert error('[models.knn]\nestimator = "KNeighborsClassifier"\n') == \
        "jobs/x.toml: data: missing (a table is required)"


@pytest.mark.parametrize("body, message", [
    ('[models."k n n"]\nestimator = "SVC"',
     "models.k n n: a model type's name uses letters, digits, '_' and '-'"),
    ("[models.knn]\ngrid = {}", "models.knn.estimator: expected a non-empty string, got None"),
    ('[models.knn]\nestimator = ""', "models.knn.estimator: expected a non-empty string, got ''"),
    ('[models.knn]\nestimator = "SVC"\nparams = [1]',
     "models.knn.params: expected a table, got [1]"),
    ('[models.knn]\nestimator = "SVC"\ngrid = 3', "models.knn.grid: expected a table, got 3"),
])
def test_bad_model(body: str, message: str) -> None:
    assert error(f'[data]\nsource = "sklearn:iris"\n{body}\n') == f"jobs/x.toml: {message}"


@pytest.mark.parametrize("steps, message", [
    ('[[preprocess]]\nname = "model"\nestimator = "StandardScaler"',
     "preprocess[0].name: 'model' is not a usable step name"),
    ('[[preprocess]]\nname = "a__b"\nestimator = "StandardScaler"',
     "preprocess[0].name: 'a__b' is not a usable step name"),
    ('[[preprocess]]\nname = "s"\nestimator = "StandardScaler"\n'
     '[[preprocess]]\nname = "s"\nestimator = "MinMaxScaler"',
     "preprocess[1].name: step 's' appears twice"),
    ('[[preprocess]]\nname = "s"', "preprocess[0].estimator: expected a non-empty string"),
    ('preprocess = { name = "s" }', "preprocess: expected a list of steps ([[preprocess]])"),
])
def test_bad_preprocess(steps: str, message: str) -> None:
    # preprocess keys must come before the [data] table in TOML
    text = steps + "\n" + MINIMAL if steps.startswith("preprocess =") else MINIMAL + steps
    assert error(text).startswith(f"jobs/x.toml: {message}")


def test_priority_must_be_an_integer() -> None:
    assert error('priority = "high"\n' + MINIMAL) == \
        "jobs/x.toml: priority: expected an integer, got 'high'"
    assert parse("priority = -2\n" + MINIMAL).priority == -2


# --- max_candidates -----------------------------------------------------------------------------

def _no_expansion(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []

    def spy(self: Any, v: Any, key: str) -> Any:
        calls.append(key)
        raise AssertionError(f"expanded {key} before counting")

    monkeypatch.setattr(grids.GridValues, "grid_values", spy)
    return calls


def test_huge_grid_is_rejected_by_counting(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _no_expansion(monkeypatch)
    msg = error(with_grid("{ a = { range = [0, 1000000000000] }, b = [1, 2] }"))
    assert calls == []
    assert msg == "jobs/x.toml: models: the grids expand to 2,000,000,000,000 candidates " \
                  "(knn: 2,000,000,000,000), more than max_candidates (100,000)"


def test_huge_linspace_and_float_range_are_counted(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _no_expansion(monkeypatch)
    msg = error(with_grid("{ a = { linspace = [0, 1, 1000000000] }, "
                          "b = { range = [0, 1, 0.000001] } }"), max_candidates=10)
    assert calls == []
    assert "expand to 1,000,000,000,000,000 candidates" in msg
    assert "more than max_candidates (10)" in msg


def test_count_beyond_a_machine_int(monkeypatch: pytest.MonkeyPatch) -> None:
    # JSON integers are unbounded: len(range(...)) would overflow here
    calls = _no_expansion(monkeypatch)
    doc = {"data": {"source": "sklearn:iris"},
           "models": {"m": {"estimator": "SVC", "grid": {"a": {"range": [10 ** 30]}}}}}
    msg = error(as_json(doc), X_JSON)
    assert calls == []
    assert f"expand to {10 ** 30:,} candidates" in msg


def test_count_for_several_models_and_lists_of_grids() -> None:
    text = """
[data]
source = "sklearn:iris"
[models.a]
estimator = "KNeighborsClassifier"
grid = [{ x = [1, 2, 3], y = [1, 2] }, { z = { range = [4] } }]
[models.b]
estimator = "SVC"
grid = { c = { logspace = [0, 1, 7] } }
[models.c]
estimator = "GaussianNB"
"""
    assert error(text, max_candidates=17) == \
        "jobs/x.toml: models: the grids expand to 18 candidates (a: 10, b: 7, c: 1), more " \
        "than max_candidates (17)"
    s = parse(text, max_candidates=18)
    assert [m.n_candidates for m in s.models] == [10, 7, 1]
    assert s.n_candidates == 18 and s.fits_total == 18 * 5


def test_values_are_checked_after_counting() -> None:
    # a bad value inside a list that is too big anyway: the size is the first complaint
    msg = error(with_grid('{ a = [1, { bad = 1 }], b = { range = [100] } }'), max_candidates=10)
    assert "expand to 200 candidates" in msg


# --- load_job and canonical ---------------------------------------------------------------------

def test_load_job_reads_the_file(tmp_path: Path) -> None:
    p = tmp_path / "jobs" / "digits-1.toml"
    p.parent.mkdir()
    p.write_text(MINIMAL)
    s = load_job(p, 10)
    assert s.id == "digits-1" and s.path == p
    assert s.data.base_dir == p.parent
    assert s.digest == hashlib.sha256(p.read_bytes()).hexdigest()
    assert load_job(p, 10, base_dir=tmp_path).data.base_dir == tmp_path


def test_load_job_missing_or_unreadable(tmp_path: Path) -> None:
    with pytest.raises(JobSpecError, match=r"nope\.toml: job file not found$"):
        load_job(tmp_path / "nope.toml", 10)
    d = tmp_path / "dir.toml"
    d.mkdir()
    with pytest.raises(JobSpecError, match=r"dir\.toml: cannot read: Is a directory$"):
        load_job(d, 10)


def test_canonical_is_order_independent() -> None:
    assert canonical({"b": 1, "a": [1.5, None]}) == canonical({"a": [1.5, None], "b": 1}) == \
        '{"a":[1.5,null],"b":1}'
    with pytest.raises(ValueError):
        canonical({"a": float("nan")})


# --- data ---------------------------------------------------------------------------------------

def data_spec(tmp_path: Path, body: str, cv: int = 3, name: str = "d.toml") -> JobSpec:
    jobs = tmp_path / "jobs"
    jobs.mkdir(exist_ok=True)
    p = jobs / name
    p.write_text(f"[data]\n{body}\n[search]\ncv = {cv}\n"
                 "[models.knn]\nestimator = \"KNeighborsClassifier\"\n")
    return load_job(p, 100)


def test_sklearn_bundled(tmp_path: Path) -> None:
    from sklearn.datasets import load_iris
    ds = load_dataset(data_spec(tmp_path, 'source = "sklearn:iris"'), True)
    X, y = load_iris(return_X_y=True)
    assert np.array_equal(ds.X_train, X) and np.array_equal(ds.y_train, y)
    assert ds.X_test is None and ds.y_test is None
    assert len(ds.digest) == 64


def test_sklearn_make_classification(tmp_path: Path) -> None:
    from sklearn.datasets import make_classification
    job = data_spec(tmp_path, 'source = "sklearn:make_classification"\n'
                              "params = { n_samples = 60, n_features = 5, n_informative = 3, "
                              "random_state = 3 }")
    X, y = load_xy(job)
    X_ref, y_ref = make_classification(n_samples=60, n_features=5, n_informative=3,
                                       random_state=3)
    assert X.shape == (60, 5)
    assert np.array_equal(X, X_ref) and np.array_equal(y, y_ref)


@pytest.mark.parametrize("body, message", [
    ('source = "sklearn:make_classification"\nparams = { n_sample = 10 }',
     "data.source: sklearn:make_classification: "),
    ('source = "sklearn:iris"\nparams = { n = 1 }', "data.source: sklearn:iris takes no "
     "data.params"),
    ('source = "sklearn:titanic"', "data.source: unknown dataset sklearn:titanic (bundled: "),
    ('source = "sklearn:load_iris"', "data.source: unknown dataset sklearn:load_iris"),
    ('source = "sklearn:make_low_rank_matrix"',
     "data.source: sklearn:make_low_rank_matrix does not return (X, y)"),
])
def test_sklearn_source_errors(tmp_path: Path, body: str, message: str) -> None:
    job = data_spec(tmp_path, body)
    with pytest.raises(DataError) as e:
        load_xy(job)
    assert str(e.value).startswith(f"{job.path}: {message}"), str(e.value)


def _in_jobs(tmp_path: Path, name: str) -> Path:
    """A path in the job's folder (data files are read only from there or data_dirs)."""
    (tmp_path / "jobs").mkdir(exist_ok=True)
    if "." not in name:
        (tmp_path / "jobs" / name).mkdir(exist_ok=True)
    return tmp_path / "jobs" / name


CSV = "a,b,label\n1,2,0\n3,4,1\n5,6,0\n7,8,1\n9,10,0\n11,12,1\n"


def test_csv_relative_to_the_job_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "jobs" / "data").mkdir(parents=True)
    (tmp_path / "jobs" / "data" / "d.csv").write_text(CSV)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # relative to the job file's folder, not the cwd
    job = data_spec(tmp_path, 'source = "csv:data/d.csv"\ntarget = "label"')
    X, y = load_xy(job)  # a DataFrame, as pandas.read_csv infers it
    assert np.array_equal(X, [[1, 2], [3, 4], [5, 6], [7, 8], [9, 10], [11, 12]])
    assert list(X.columns) == ["a", "b"]
    assert y.tolist() == [0, 1, 0, 1, 0, 1] and y.dtype == np.int64


def test_csv_target_in_the_middle_and_string_labels(tmp_path: Path) -> None:
    _in_jobs(tmp_path, "d.csv").write_text("a,kind,b\n1,cat,2\n3,dog,4\n5,cat,6\n\n")
    job = data_spec(tmp_path, 'source = "csv:d.csv"\ntarget = "kind"', cv=2)
    X, y = load_xy(job)
    assert X.to_numpy().tolist() == [[1, 2], [3, 4], [5, 6]]  # a blank line is no sample
    assert y.tolist() == ["cat", "dog", "cat"]


def test_csv_missing_file(tmp_path: Path) -> None:
    job = data_spec(tmp_path, 'source = "csv:data/missing.csv"\ntarget = "y"')
    with pytest.raises(DataError) as e:
        load_xy(job)
    missing = tmp_path / "jobs" / "data" / "missing.csv"
    assert str(e.value) == f"{job.path}: data.source: {missing}: No such file or directory"


def test_csv_missing_column(tmp_path: Path) -> None:
    (tmp_path / "jobs").mkdir()
    (tmp_path / "jobs" / "d.csv").write_text(CSV)
    job = data_spec(tmp_path, 'source = "csv:d.csv"\ntarget = "y"')
    with pytest.raises(DataError) as e:
        load_xy(job)
    assert str(e.value) == \
        f"{job.path}: data.target: {tmp_path / 'jobs' / 'd.csv'}: no column 'y' " \
        "(3 columns)"


@pytest.mark.parametrize("text, message", [
    ("", "is empty"),
    ("a,b,label\n1,2,0\n3,4,0,9\n5,6,1\n", "Expected 3 fields in line 3, saw 4"),
    ("a,b,label\n1,2,0\n3,4\n5,6,1\n", "has a missing value (data row 2)"),  # a short row
])
def test_csv_bad_content(tmp_path: Path, text: str, message: str) -> None:
    _in_jobs(tmp_path, "d.csv").write_text(text)
    job = data_spec(tmp_path, 'source = "csv:d.csv"\ntarget = "label"', cv=2)
    with pytest.raises(DataError) as e:
        load_xy(job)
    assert str(e.value).startswith(f"{job.path}: data.")
    assert str(tmp_path / "jobs" / "d.csv") in str(e.value)
    assert message in str(e.value)


def test_npz(tmp_path: Path) -> None:
    X = np.arange(20.0).reshape(10, 2)
    y = np.array([0, 1] * 5)
    np.savez(_in_jobs(tmp_path, "sub") / "d.npz", X=X, y=y)
    job = data_spec(tmp_path, 'source = "npz:sub/../sub/d.npz"')
    X2, y2 = load_xy(job)
    assert np.array_equal(X2, X) and np.array_equal(y2, y)


@pytest.mark.parametrize("arrays, message", [
    ({"X": np.zeros((6, 2)), "target": np.zeros(6)}, "must hold arrays named X and y "
     "(it has no y)"),
    ({"X": np.zeros(6), "y": np.zeros(6)}, "X must be 2-D and y 1-D or 2-D, got shapes "
     "(6,) and (6,)"),
    ({"X": np.zeros((6, 2)), "y": np.zeros(5)}, "X has 6 rows but y has 5"),
    ({"X": np.zeros((6, 2)), "y": np.array([{}] * 6, dtype=object)}, "allow_pickle"),
])
def test_npz_errors(tmp_path: Path, arrays: dict[str, np.ndarray], message: str) -> None:
    np.savez(_in_jobs(tmp_path, "d.npz"), **arrays)  # type: ignore[arg-type]
    job = data_spec(tmp_path, f'source = "npz:{tmp_path / "jobs" / "d.npz"}"', cv=2)
    with pytest.raises(DataError) as e:
        load_xy(job)
    assert str(e.value).startswith(f"{job.path}: data.source: ")
    assert message in str(e.value)


def test_npz_missing_and_npy(tmp_path: Path) -> None:
    job = data_spec(tmp_path, 'source = "npz:nope.npz"')
    with pytest.raises(DataError, match=r"nope\.npz: No such file or directory$"):
        load_xy(job)
    np.save(tmp_path / "jobs" / "a.npy", np.zeros((4, 2)))
    job = data_spec(tmp_path, 'source = "npz:a.npy"')
    with pytest.raises(DataError, match=r"a\.npy is not an \.npz archive of arrays X and y$"):
        load_xy(job)


def test_fewer_samples_than_folds(tmp_path: Path) -> None:
    _in_jobs(tmp_path, "d.csv").write_text("a,y\n1,0\n2,1\n3,0\n")
    job = data_spec(tmp_path, 'source = "csv:d.csv"\ntarget = "y"', cv=4)
    with pytest.raises(DataError, match=r"data\.source: 3 samples are fewer than the 4 folds$"):
        load_xy(job)


def test_holdout_split_sizes_and_stratification(tmp_path: Path) -> None:
    job = data_spec(tmp_path, 'source = "sklearn:iris"\ntest_size = 0.2\nseed = 1')
    ds = load_dataset(job, True)
    assert ds.X_train.shape == (120, 4) and ds.y_train.shape == (120,)
    assert ds.X_test is not None and ds.y_test is not None
    assert ds.X_test.shape == (30, 4)
    assert np.bincount(ds.y_test).tolist() == [10, 10, 10]  # stratified for classifiers
    assert np.bincount(ds.y_train).tolist() == [40, 40, 40]
    # same seed, same split; another seed, another split (and another digest)
    assert load_dataset(job, True).digest == ds.digest
    other = data_spec(tmp_path, 'source = "sklearn:iris"\ntest_size = 0.2\nseed = 2', name="e.toml")
    assert load_dataset(other, True).digest != ds.digest


def test_holdout_as_a_count_for_regression(tmp_path: Path) -> None:
    job = data_spec(tmp_path, 'source = "sklearn:diabetes"\ntest_size = 42')
    ds = load_dataset(job, False)
    assert ds.X_test is not None and len(ds.X_test) == 42
    assert len(ds.X_train) == 442 - 42


def test_holdout_too_big(tmp_path: Path) -> None:
    job = data_spec(tmp_path, 'source = "sklearn:iris"\ntest_size = 150')
    with pytest.raises(DataError, match=r"d\.toml: data\.test_size: test_size=150 should be"):
        load_dataset(job, True)


def test_holdout_leaves_too_few_for_the_folds(tmp_path: Path) -> None:
    job = data_spec(tmp_path, 'source = "sklearn:iris"\ntest_size = 146', cv=5)
    with pytest.raises(DataError) as e:
        load_dataset(job, False)
    assert str(e.value) == \
        f"{job.path}: data.test_size: 4 training samples are fewer than the 5 folds"
