"""The estimator allow-list and building estimators from a job (searchd.worker.estimators)."""

from __future__ import annotations

import importlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sklearn.base import BaseEstimator
from sklearn.ensemble import BaggingClassifier, RandomForestClassifier
from sklearn.model_selection import ParameterGrid
from sklearn.naive_bayes import GaussianNB
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.tree import DecisionTreeClassifier

from searchd.errors import JobSpecError
from searchd.jobs.load import parse_job
from searchd.jobs.spec import JobSpec
from searchd.worker import estimators
from searchd.worker.estimators import (
    MODEL_STEP,
    build_candidate,
    build_estimator,
    build_template,
    check_model,
    grid_key,
    is_classification,
    resolve,
)
from searchd.worker.sklearn_names import public_module
from searchd.worker.sklearn_names_table import MODULES

WHERE = "jobs/x.toml: models.m.estimator"


def job(models: str, preprocess: str = "") -> JobSpec:
    text = f'[data]\nsource = "sklearn:iris"\n{preprocess}\n{models}\n'
    return parse_job(text.encode(), Path("jobs/x.toml"), 10_000)


def check_error(spec: JobSpec, allow: tuple[str, ...] = ()) -> str:
    with pytest.raises(JobSpecError) as e:
        for m in spec.models:
            check_model(spec, m, allow)
    return str(e.value)


SCALE = '[[preprocess]]\nname = "scale"\nestimator = "StandardScaler"\n'


@pytest.fixture
def import_spy(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every module importlib is asked for (process-wide: estimators.importlib *is* importlib).

    scikit-learn's own import of its public modules (all_estimators) happens first, once.
    """
    estimators._public_estimators()
    calls: list[str] = []
    real = importlib.import_module

    def spy(name: str, package: str | None = None) -> Any:
        calls.append(name)
        return real(name, package)

    monkeypatch.setattr(estimators.importlib, "import_module", spy)
    return calls


# --- resolve: what is allowed -------------------------------------------------------------------

@pytest.mark.parametrize("name, cls", [
    ("KNeighborsClassifier", KNeighborsClassifier),
    ("RandomForestClassifier", RandomForestClassifier),
    ("StandardScaler", StandardScaler),
    ("sklearn.ensemble.RandomForestClassifier", RandomForestClassifier),
    ("sklearn.neighbors.KNeighborsClassifier", KNeighborsClassifier),
    ("sklearn.tree.DecisionTreeClassifier", DecisionTreeClassifier),
])
def test_resolve_public_estimators(name: str, cls: type, import_spy: list[str]) -> None:
    assert resolve(name) is cls
    # a short name imports the one public module the table names; a dotted one nothing
    assert import_spy == ([] if "." in name else [MODULES[name]])


def test_every_public_estimator_resolves_by_its_short_name() -> None:
    from sklearn.utils import all_estimators
    for name, cls in all_estimators():
        assert resolve(name) is cls


def test_the_table_agrees_with_the_installed_scikit_learn() -> None:
    """Every entry that the installed scikit-learn has gives all_estimators' class; most
    public estimators are in the table (regenerate it when this fails on a new release)."""
    from sklearn.utils import all_estimators
    public = dict(all_estimators())
    for name, module in MODULES.items():
        if name in public:
            assert public_module(name, public[name]) == module, name
    assert len(set(public) & set(MODULES)) >= 0.9 * len(public)


def test_a_short_name_does_not_import_all_of_scikit_learn() -> None:
    code = ("from searchd.worker import estimators; estimators.resolve('SVC'); "
            "print(estimators._public_estimators.cache_info().currsize, "
            "'sklearn.cluster' in __import__('sys').modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=True)
    assert out.stdout.split() == ["0", "False"]


def test_a_stale_table_entry_falls_back_to_all_estimators(monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    from sklearn.svm import SVC
    monkeypatch.setitem(MODULES, "SVC", "sklearn.tree")  # moved, in some later version
    assert resolve("SVC") is SVC
    monkeypatch.setitem(MODULES, "KFold", "sklearn.model_selection")  # not an estimator
    with pytest.raises(JobSpecError, match="unknown estimator 'KFold'"):
        resolve("KFold")
    monkeypatch.setitem(MODULES, "Nothing", "sklearn.no_such_module")
    with pytest.raises(JobSpecError, match="unknown estimator 'Nothing'"):
        resolve("Nothing")


# --- resolve: what is refused -------------------------------------------------------------------

@pytest.mark.parametrize("name, message", [
    ("os.system", "estimator 'os.system': module 'os' is not allowed (only scikit-learn and "
     "the daemon's allow_modules)"),
    ("builtins.eval", "estimator 'builtins.eval': module 'builtins' is not allowed"),
    ("subprocess.Popen", "estimator 'subprocess.Popen': module 'subprocess' is not allowed"),
    ("json.loads", "estimator 'json.loads': module 'json' is not allowed"),
    ("evilmod.Thing", "estimator 'evilmod.Thing': module 'evilmod' is not allowed"),
    ("sklearn.utils._testing.X",
     "estimator 'sklearn.utils._testing.X' names a private or invalid module path"),
    ("sklearn.ensemble._forest.RandomForestClassifier",
     "names a private or invalid module path"),
    ("_evil.Thing", "names a private or invalid module path"),
    ("sklearn.tree.DecisionTreeClassifier.__init__", "names a private or invalid module path"),
    ("sklearn..tree", "names a private or invalid module path"),
    ("os.path.join(1)", "names a private or invalid module path"),
    ("sklearn.model_selection.KFold",
     "'sklearn.model_selection.KFold' is not a public scikit-learn estimator"),
    ("sklearn.base.clone", "'sklearn.base.clone' is not a public scikit-learn estimator"),
    ("sklearn.base.BaseEstimator", "is not a public scikit-learn estimator"),
    # no such module: a message, not a ModuleNotFoundError
    ("sklearn.nosuchmodule.Thing", "'sklearn.nosuchmodule.Thing' is not a public scikit-learn "
     "estimator"),
    ("sklearn.os.system", "'sklearn.os.system' is not a public scikit-learn estimator"),
    ("sklearn.ensemble.RandomForestClassifier.fit", "is not a public scikit-learn estimator"),
    ("KFold", "unknown estimator 'KFold' (not a public scikit-learn estimator; give a dotted "
     "name for an allowed module)"),
    ("NoSuchEstimator", "unknown estimator 'NoSuchEstimator'"),
    ("eval", "unknown estimator 'eval'"),
])
def test_resolve_refuses(name: str, message: str, import_spy: list[str]) -> None:
    with pytest.raises(JobSpecError) as e:
        resolve(name, where=WHERE)
    assert str(e.value).startswith(f"{WHERE}: ")
    assert message in str(e.value)
    assert import_spy == []  # refused without importing anything


def test_resolve_does_not_import_sklearn_test_modules(import_spy: list[str],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    # importing these would run sklearn's test-module or experimental-enabler code
    for module in ("sklearn.tests.test_base", "sklearn.experimental.enable_halving_search_cv"):
        # an earlier test's reference (HalvingGridSearchCV) may have imported the enabler
        monkeypatch.delitem(sys.modules, module, raising=False)
        with pytest.raises(JobSpecError, match="is not a public scikit-learn estimator"):
            resolve(f"{module}.Thing")
        assert module not in sys.modules
    assert import_spy == []


def test_allow_modules_does_not_allow_sklearn_private_paths() -> None:
    with pytest.raises(JobSpecError, match="private or invalid module path"):
        resolve("sklearn.utils._testing.MinimalClassifier", allow_modules=("sklearn",))


@pytest.fixture
def evilmod(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A module on sys.path whose import would leave a marker file behind."""
    marker = tmp_path / "imported.marker"
    (tmp_path / "evilmod.py").write_text(
        f"from pathlib import Path\nPath({str(marker)!r}).write_text('imported')\n"
        "class Thing:\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "evilmod", raising=False)
    yield marker
    sys.modules.pop("evilmod", None)


def test_the_evil_module_really_would_leave_a_marker(evilmod: Path) -> None:
    importlib.import_module("evilmod")  # the fixture works: importing is detectable
    assert evilmod.exists()


def test_resolving_a_disallowed_module_does_not_import_it(evilmod: Path,
                                                          import_spy: list[str]) -> None:
    for name in ("evilmod.Thing", "os.system", "json.loads"):
        with pytest.raises(JobSpecError, match="is not allowed"):
            resolve(name)
    assert not evilmod.exists()
    assert "evilmod" not in sys.modules
    assert import_spy == []


def test_a_job_naming_a_disallowed_module_does_not_import_it(evilmod: Path) -> None:
    spec = job('[models.m]\nestimator = "GaussianNB"\n'
               'grid = { priors = [{ estimator = "evilmod.Thing" }] }\n'
               '[models.n]\nestimator = "evilmod.Thing"\n')
    assert check_error(spec) == \
        "jobs/x.toml: models.m.grid.priors[0].estimator: estimator 'evilmod.Thing': module " \
        "'evilmod' is not allowed (only scikit-learn and the daemon's allow_modules)"
    with pytest.raises(JobSpecError, match=r"^jobs/x\.toml: models\.n\.estimator: estimator "):
        check_model(spec, spec.model("n"), ())
    assert not evilmod.exists()
    assert "evilmod" not in sys.modules


MYMOD = """
from sklearn.base import BaseEstimator, ClassifierMixin

class MyEstimator(ClassifierMixin, BaseEstimator):
    def __init__(self, alpha=1.0):
        self.alpha = alpha

class NotAnEstimator:
    pass

def function():
    return 1
"""


@pytest.fixture
def mymod(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    (tmp_path / "mymod.py").write_text(MYMOD)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "mymod", raising=False)
    yield
    sys.modules.pop("mymod", None)


def test_allow_modules_allows_an_estimator(mymod: None) -> None:
    cls = resolve("mymod.MyEstimator", allow_modules=("mymod",))
    assert cls.__name__ == "MyEstimator" and issubclass(cls, BaseEstimator)
    est = build_estimator("mymod.MyEstimator", {"alpha": 0.5}, ("mymod",), "w")
    assert est.get_params() == {"alpha": 0.5}


@pytest.mark.parametrize("attr", ["NotAnEstimator", "function", "missing"])
def test_allow_modules_refuses_what_is_no_estimator(mymod: None, attr: str) -> None:
    with pytest.raises(JobSpecError) as e:
        resolve(f"mymod.{attr}", allow_modules=("mymod",), where=WHERE)
    assert str(e.value) == \
        f"{WHERE}: 'mymod.{attr}' is not a scikit-learn compatible estimator class"


def test_allow_modules_is_needed_and_exact(mymod: None) -> None:
    with pytest.raises(JobSpecError, match="module 'mymod' is not allowed"):
        resolve("mymod.MyEstimator")
    with pytest.raises(JobSpecError, match="module 'mymod' is not allowed"):
        resolve("mymod.MyEstimator", allow_modules=("mymo", "mymodule"))
    assert "mymod" not in sys.modules


def test_allowed_module_that_cannot_be_imported() -> None:
    with pytest.raises(JobSpecError) as e:
        resolve("nosuchmod_xyz.sub.Est", allow_modules=("nosuchmod_xyz",), where=WHERE)
    assert str(e.value).startswith(
        f"{WHERE}: estimator 'nosuchmod_xyz.sub.Est': cannot import nosuchmod_xyz.sub: ")


def test_allowed_estimator_in_a_job(mymod: None) -> None:
    spec = job('[models.m]\nestimator = "mymod.MyEstimator"\ngrid = { alpha = [0.1, 1.0] }\n')
    est = check_model(spec, spec.models[0], ("mymod",))
    assert type(est).__name__ == "MyEstimator"
    assert is_classification(spec, ("mymod",))
    with pytest.raises(JobSpecError, match="module 'mymod' is not allowed"):
        check_model(spec, spec.models[0], ())


# --- check_model --------------------------------------------------------------------------------

def test_check_model_names_a_misspelt_parameter() -> None:
    spec = job('[models.knn]\nestimator = "KNeighborsClassifier"\n'
               'grid = { n_neigbors = [1, 3] }\n')
    assert check_error(spec) == \
        "jobs/x.toml: models.knn.grid.n_neigbors: KNeighborsClassifier has no parameter " \
        "'n_neigbors'"


def test_check_model_names_a_misspelt_fixed_parameter() -> None:
    spec = job('[models.knn]\nestimator = "KNeighborsClassifier"\nparams = { n_neigbors = 3 }\n')
    assert check_error(spec) == \
        "jobs/x.toml: models.knn.params.n_neigbors: KNeighborsClassifier has no parameter " \
        "'n_neigbors'"


def test_check_model_unknown_estimator() -> None:
    spec = job('[models.knn]\nestimator = "KNeighboursClassifier"\n')
    assert check_error(spec).startswith(
        "jobs/x.toml: models.knn.estimator: unknown estimator 'KNeighboursClassifier'")


def test_check_model_estimator_needing_arguments() -> None:
    spec = job('[models.p]\nestimator = "Pipeline"\n')
    assert check_error(spec).startswith(
        "jobs/x.toml: models.p.estimator: 'Pipeline' cannot be built without arguments: ")


def test_check_model_returns_an_unfitted_template() -> None:
    spec = job('[models.rf]\nestimator = "RandomForestClassifier"\n'
               'params = { random_state = 0, max_depth = { none = true } }\n'
               'grid = { n_estimators = [5, 10] }\n')
    est = check_model(spec, spec.models[0], ())
    assert isinstance(est, RandomForestClassifier)
    assert est.random_state == 0 and est.max_depth is None
    assert not hasattr(est, "estimators_")


def test_preprocess_params_and_model_params_with_a_pipeline() -> None:
    spec = job('[models.knn]\nestimator = "KNeighborsClassifier"\nparams = { n_neighbors = 2 }\n'
               'grid = { n_neighbors = [1, 3], scale__with_mean = [true, false] }\n', SCALE)
    est = check_model(spec, spec.models[0], ())
    assert isinstance(est, Pipeline)
    assert [name for name, _ in est.steps] == ["scale", MODEL_STEP]
    assert isinstance(est.named_steps["scale"], StandardScaler)
    assert est.named_steps[MODEL_STEP].n_neighbors == 2
    # every candidate's parameters reach the right step
    for params in ParameterGrid([dict(g) for g in spec.models[0].grid]):
        cand = build_candidate(params, spec, (), "w")
        assert set(cand) == {"model__n_neighbors", "scale__with_mean"}
        est.set_params(**cand)
        assert est.named_steps[MODEL_STEP].n_neighbors == params["n_neighbors"]
        assert est.named_steps["scale"].with_mean == params["scale__with_mean"]


@pytest.mark.parametrize("grid, message", [
    ("{ n_neigbors = [1] }",
     "models.knn.grid.n_neigbors: KNeighborsClassifier (step 'model') has no parameter "
     "'n_neigbors'"),
    ("{ scale__with_meen = [true] }",
     "models.knn.grid.scale__with_meen: StandardScaler (step 'scale') has no parameter "
     "'scale__with_meen'"),
    ("{ model__n_neighbors = [1] }",  # a model parameter is written without the step name
     "models.knn.grid.model__n_neighbors: KNeighborsClassifier (step 'model') has no "
     "parameter 'model__n_neighbors'"),
])
def test_misspelt_parameters_with_a_pipeline(grid: str, message: str) -> None:
    spec = job(f'[models.knn]\nestimator = "KNeighborsClassifier"\ngrid = {grid}\n', SCALE)
    assert check_error(spec) == f"jobs/x.toml: {message}"


def test_preprocess_step_errors() -> None:
    spec = job('[models.nb]\nestimator = "GaussianNB"\n',
               '[[preprocess]]\nname = "scale"\nestimator = "StandardScaler"\n'
               'params = { with_meen = false }\n')
    assert check_error(spec) == \
        "jobs/x.toml: preprocess.scale.params.with_meen: StandardScaler has no parameter " \
        "'with_meen'"
    spec = job('[models.nb]\nestimator = "GaussianNB"\n',
               '[[preprocess]]\nname = "scale"\nestimator = "os.system"\n')
    assert "preprocess.scale.estimator: estimator 'os.system': module 'os' is not allowed" \
        in check_error(spec)


@pytest.mark.parametrize("name, steps, expected", [
    ("n_neighbors", set(), "n_neighbors"),
    ("estimator__max_depth", set(), "estimator__max_depth"),
    ("n_neighbors", {"scale"}, "model__n_neighbors"),
    ("scale__with_mean", {"scale"}, "scale__with_mean"),
    ("scale__with_mean", {"pca", "scale"}, "scale__with_mean"),
    ("estimator__max_depth", {"scale"}, "model__estimator__max_depth"),
])
def test_grid_key(name: str, steps: set[str], expected: str) -> None:
    assert grid_key(name, steps) == expected


def test_build_template_without_preprocess_is_the_bare_estimator() -> None:
    spec = job('[models.nb]\nestimator = "GaussianNB"\nparams = { var_smoothing = 0.1 }\n')
    est = build_template(spec, spec.models[0], ())
    assert type(est) is GaussianNB and est.var_smoothing == 0.1


# --- estimator-valued parameters ----------------------------------------------------------------

BAG = '[models.bag]\nestimator = "BaggingClassifier"\n'
TREE2 = '{ estimator = "DecisionTreeClassifier", params = { max_depth = 2 } }'


def test_estimator_valued_fixed_param() -> None:
    spec = job(BAG + f"params = {{ estimator = {TREE2} }}\n"
               "grid = { estimator__max_depth = [1, 3], n_estimators = [2] }\n")
    est = check_model(spec, spec.models[0], ())
    assert isinstance(est, BaggingClassifier)
    assert isinstance(est.estimator, DecisionTreeClassifier)
    assert est.estimator.max_depth == 2


def test_estimator_valued_grid_values() -> None:
    spec = job(BAG + f'grid = [{{ n_estimators = [2] }}, {{ estimator = [{TREE2}, '
               '{ estimator = "GaussianNB" }] }]\n')
    check_model(spec, spec.models[0], ())
    tree, nb = spec.models[0].grid[1]["estimator"]
    cand = build_candidate({"estimator": tree, "n_estimators": 2}, spec, (), "w")
    assert isinstance(cand["estimator"], DecisionTreeClassifier)
    assert cand["estimator"].max_depth == 2 and cand["n_estimators"] == 2
    assert isinstance(build_candidate({"estimator": nb}, spec, (), "w")["estimator"], GaussianNB)


def test_nested_key_alongside_the_estimators_that_have_it() -> None:
    spec = job(BAG + f"grid = {{ estimator = [{TREE2}], estimator__max_depth = [1, 3] }}\n",
               SCALE)
    assert isinstance(check_model(spec, spec.models[0], ()), Pipeline)
    spec = job(BAG + 'grid = { estimator = [{ estimator = "GaussianNB" }], '
               "estimator__max_depth = [1, 3] }\n")
    assert check_error(spec) == \
        "jobs/x.toml: models.bag.grid.estimator__max_depth: BaggingClassifier has no " \
        "parameter 'estimator__max_depth'"


def test_nested_key_without_a_parent_estimator() -> None:
    # BaggingClassifier's estimator defaults to None: nothing has a max_depth to set
    spec = job(BAG + "grid = { estimator__max_depth = [1, 3] }\n")
    assert check_error(spec) == \
        "jobs/x.toml: models.bag.grid.estimator__max_depth: BaggingClassifier has no " \
        "parameter 'estimator__max_depth'"


def test_estimator_values_are_checked_too() -> None:
    spec = job(BAG + 'grid = { estimator = [{ estimator = "GaussianNB" }, '
               '{ estimator = "DecisionTreeClassifier", params = { max_deep = 2 } }] }\n')
    assert check_error(spec) == \
        "jobs/x.toml: models.bag.grid.estimator[1].params.max_deep: DecisionTreeClassifier " \
        "has no parameter 'max_deep'"
    spec = job(BAG + 'grid = { estimator = [{ estimator = "sklearn.model_selection.KFold" }] }\n')
    assert check_error(spec) == \
        "jobs/x.toml: models.bag.grid.estimator[0].estimator: " \
        "'sklearn.model_selection.KFold' is not a public scikit-learn estimator"


def test_is_classification() -> None:
    assert is_classification(job('[models.a]\nestimator = "GaussianNB"\n'), ())
    assert not is_classification(job('[models.a]\nestimator = "Ridge"\n'), ())
