"""Issue 19: csv: and parquet: data with text categories, gaps and string labels, and
column-wise preprocessing (ColumnTransformer) in job files, against scikit-learn's own
pipeline on the same file read by pandas, value by value."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer, make_column_selector
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, StratifiedKFold, train_test_split
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from searchd.errors import DataError, JobSpecError
from searchd.jobs.load import parse_job
from searchd.jobs.spec import canonical
from searchd.settings import Settings
from searchd.state.read import load_results
from searchd.state.signing import load_key
from searchd.worker import local_runner
from searchd.worker.data import load_dataset
from searchd.worker.estimators import check_model
from searchd.worker.evaluate import evaluate
from searchd.worker.events import Events
from searchd.worker.job import JobRun
from searchd.worker.plan import Scoring, splits

pytestmark = [pytest.mark.timeout(60)]

REPO = Path(__file__).resolve().parent.parent

MIXED = REPO / "jobs" / "mixed.toml"
CSV = REPO / "jobs" / "data" / "mixed.csv"


def place(tmp: Path, text: str, data: Path = CSV, name: str = "mixed.csv") -> Settings:
    """A state folder and a jobs folder holding job 'j' (``text``) and its data file."""
    state, jobs = tmp / "state", tmp / "jobs"
    (jobs / "data").mkdir(parents=True)
    state.mkdir()
    shutil.copy(data, jobs / "data" / name)
    load_key(state, create=True)
    (state / "j").mkdir()
    (state / "j" / "job.toml").write_text(text)
    (jobs / "j.toml").write_text(text)
    return Settings(state_dir=state, jobs_dir=jobs, n_jobs=1, report=False)


def run_job(tmp: Path, text: str, **kw: Any) -> Any:
    settings = place(tmp, text, **kw)
    assert JobRun(settings.state_dir / "j", "j", settings, Events(None)).run() == 0
    return load_results("j", settings.state_dir)["lr"]


def reference(X: pd.DataFrame, y: pd.Series) -> GridSearchCV:
    """jobs/mixed.toml written by hand in scikit-learn."""
    X_train, _, y_train, _ = train_test_split(X, y, test_size=0.2, random_state=0, stratify=y)
    cols = ColumnTransformer([
        ("cat", make_pipeline(SimpleImputer(strategy="most_frequent"),
                              OneHotEncoder(handle_unknown="ignore")),
         make_column_selector(dtype_include=object)),
        ("num", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()),
         ["age", "income"]),
    ], remainder="drop")
    pipe = Pipeline([("cols", cols), ("model", LogisticRegression(max_iter=1000))])
    grid = {"model__C": [0.1, 1.0], "cols__num__simpleimputer__strategy": ["median", "mean"]}
    return GridSearchCV(pipe, grid, cv=StratifiedKFold(3), scoring="accuracy").fit(
        X_train, y_train)


def assert_same(ours: Any, theirs: GridSearchCV) -> None:
    """Every split score, mean, std and rank equal, value by value, candidate by candidate."""
    a, b = ours.cv_results_, theirs.cv_results_
    mine = {canonical({("model__" + k if "__" not in k else k): v for k, v in p.items()}): i
            for i, p in enumerate(a["params"])}
    assert len(mine) == len(b["params"]) == 4
    for j, p in enumerate(b["params"]):
        i = mine[canonical(dict(p))]
        for col in ("split0_test_score", "split1_test_score", "split2_test_score",
                    "mean_test_score", "std_test_score", "rank_test_score"):
            assert a[col][i] == b[col][j], (col, p)
    assert ours.best_score_ == theirs.best_score_


def read_mixed() -> tuple[pd.DataFrame, pd.Series]:
    df = pd.read_csv(CSV)
    return df.drop(columns=["label", "score"]), df["label"]


@pytest.mark.timeout(120)  # a whole job in this process: seconds, more on a loaded machine
def test_the_mixed_csv_job_equals_scikit_learns_pipeline_on_pandas_read_csv(
        tmp_path: Path) -> None:
    ours = run_job(tmp_path, MIXED.read_text())
    assert_same(ours, reference(*read_mixed()))
    model = ours.best_estimator_  # refitted on the training rows, with the frame's names
    assert list(model.feature_names_in_) == ["age", "income", "color", "city"]
    assert set(model.classes_) == {"no", "yes"} and ours.test_score_["accuracy"] > 0.6


@pytest.mark.timeout(120)
def test_parquet_gives_the_same_scores(tmp_path: Path) -> None:
    pytest.importorskip("pyarrow")
    pq = tmp_path / "mixed.parquet"
    pd.read_csv(CSV).to_parquet(pq)
    text = MIXED.read_text().replace('"csv:data/mixed.csv"', '"parquet:data/mixed.parquet"')
    ours = run_job(tmp_path / "run", text, data=pq, name="mixed.parquet")
    df = pd.read_parquet(pq)
    assert_same(ours, reference(df.drop(columns=["label", "score"]), df["label"]))


def _spec(tmp: Path, text: str) -> Any:
    settings = place(tmp, text)
    path = settings.jobs_dir / "j.toml"
    return parse_job(text.encode(), path, 10**6), settings


def test_the_digest_is_the_files_content_and_the_columns_kept(tmp_path: Path) -> None:
    spec, s = _spec(tmp_path, MIXED.read_text())
    first = load_dataset(spec, True).digest
    f = s.jobs_dir / "data" / "mixed.csv"
    f.write_bytes(f.read_bytes())  # the same bytes, a new mtime
    assert load_dataset(spec, True).digest == first
    f.write_text(f.read_text().replace("Lyon", "Lyons", 1))
    assert load_dataset(spec, True).digest != first
    other, _ = _spec(tmp_path / "b", MIXED.read_text().replace(
        'drop = ["score"]', 'features = ["age", "income", "color", "city"]'))
    assert load_dataset(other, True).X_train.columns.tolist() == \
        ["age", "income", "color", "city"]


@pytest.mark.parametrize("old, new, message", [
    ('drop = ["score"]', 'drop = ["scor"]', "data.drop: {csv}: no column 'scor' (6 columns)"),
    ('drop = ["score"]', 'features = ["age", "colour"]',
     "data.features: {csv}: no column 'colour' (6 columns)"),
    ('target = "label"', 'target = "lable"', "data.target: {csv}: no column 'lable'"),
])
def test_a_column_that_is_not_there_names_it_and_the_file(
        tmp_path: Path, old: str, new: str, message: str) -> None:
    spec, s = _spec(tmp_path, MIXED.read_text().replace(old, new))
    with pytest.raises(DataError) as e:
        load_dataset(spec, True)
    assert message.format(csv=s.jobs_dir / "data" / "mixed.csv") in str(e.value)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("old, new, message", [
    ('columns = { dtype = "object" }', 'columns = { dtype = "text" }',
     "preprocess[0].params.transformers[0].columns.dtype: 'text' is not a dtype a selector "
     "takes"),
    ('columns = { dtype = "object" }', 'columns = { dtyp = "object" }',
     "preprocess[0].params.transformers[0].columns.dtyp: unknown key"),
    ('columns = ["age", "income"]', "columns = 3",
     "preprocess[0].params.transformers[1].columns: expected a list of column names or a "
     "selector"),
    ('columns = ["age", "income"]', 'columns = ["age", "age"]',
     "preprocess[0].params.transformers[1].columns: names a column twice"),
    ('name = "num"', 'name = "remainder"',
     "preprocess[0].params.transformers[1].name: 'remainder' is not a usable transformer name"),
    ('name = "num"', 'name = "cat"',
     "preprocess[0].params.transformers[1].name: transformer 'cat' appears twice"),
    ('columns = { dtype = "object" }', 'columns = { pattern = "(" }',
     "preprocess[0].params.transformers[0].columns.pattern: not a regular expression"),
])
def test_bad_selectors_and_transformers_are_one_line_errors(
        old: str, new: str, message: str) -> None:
    text = MIXED.read_text().replace(old, new, 1)
    with pytest.raises(JobSpecError) as e:
        parse_job(text.encode(), Path("jobs/j.toml"), 10**6)
    assert str(e.value).startswith(f"jobs/j.toml: {message}"), str(e.value)


@pytest.mark.parametrize("old, new, message", [
    ('estimator = "StandardScaler" }', 'estimator = "os.system" }',
     "preprocess.cols.params.transformers[1].steps[1].estimator: estimator 'os.system': "
     "module 'os' is not allowed"),
    ('{ estimator = "StandardScaler" }',
     '{ estimator = "TfidfVectorizer", params = { input = "filename" } }',
     "is refused for TfidfVectorizer's parameter 'input'"),
    ('grid = { C = [0.1, 1.0], ',
     'grid = { C = [0.1, 1.0], cols__num__imputer__strategy = ["mean"], ',
     "has no parameter 'cols__num__imputer__strategy'"),
])
def test_every_estimator_inside_passes_the_allow_list_and_the_audit(
        tmp_path: Path, old: str, new: str, message: str) -> None:
    text = MIXED.read_text()
    assert old in text
    spec, _ = _spec(tmp_path, text.replace(old, new, 1))
    with pytest.raises(JobSpecError) as e:
        check_model(spec, spec.models[0], ())
    assert message in str(e.value), str(e.value)


def test_named_steps_and_estimator_transformers(tmp_path: Path) -> None:
    text = MIXED.read_text().replace(
        '{ estimator = "StandardScaler" }]', '{ name = "scale", estimator = "StandardScaler" }]'
    ).replace('cols__num__simpleimputer__strategy', 'cols__num__scale__with_mean')
    text = text.replace('["median", "mean"]', "[true, false]")
    spec, _ = _spec(tmp_path, text)
    t = check_model(spec, spec.models[0], ())
    params = t.get_params()
    assert params["cols__num"].steps[1][0] == "scale"
    assert "cols__num__scale__with_mean" in params and "cols__num__simpleimputer" in params


def test_the_pool_gets_the_frame_memory_mapped_and_scores_the_same(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A frame past MMAP_BYTES goes to the pool's processes through joblib's file: its numeric
    columns memory-mapped, its strings loaded; a task scores the same on it."""
    spec, _ = _spec(tmp_path, MIXED.read_text())
    data = load_dataset(spec, True)
    sp = splits(spec, data.X_train, data.y_train, True)
    monkeypatch.setattr(local_runner, "MMAP_BYTES", 0)
    runner = local_runner.LocalRunner(2, data.X_train, data.y_train, sp, tmp_path / "pool")
    path = runner._pool_payload()
    assert isinstance(path, str)
    X, y, _ = joblib.load(path, mmap_mode="r")
    assert X.equals(data.X_train) and np.array_equal(y, data.y_train)
    numeric = [b.values for b in X._mgr.blocks if b.values.dtype == np.float64]
    assert numeric and all(isinstance(v, np.memmap) for v in numeric)  # mapped, not copied
    template = check_model(spec, spec.models[0], ())
    scoring = Scoring(spec, template)
    a = evaluate(template, {"model__C": 1.0}, data.X_train, data.y_train, *sp[0], scoring, 0, 0)
    b = evaluate(template, {"model__C": 1.0}, X, y, *sp[0], scoring, 0, 0)
    assert a.scores == b.scores and a.error is None
    runner.close()


def test_parquet_without_pyarrow_names_the_extra(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("pyarrow")
    pq = tmp_path / "m.parquet"
    pd.read_csv(CSV).to_parquet(pq)
    text = MIXED.read_text().replace('"csv:data/mixed.csv"', '"parquet:data/m.parquet"')
    settings = place(tmp_path / "run", text, data=pq, name="m.parquet")
    spec = parse_job(text.encode(), settings.jobs_dir / "j.toml", 10**6)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    with pytest.raises(DataError, match=r"data.source: parquet: sources need pyarrow "
                                        r"\(pip install 'searchd\[parquet\]'\)$"):
        load_dataset(spec, True)


def test_the_shipped_csv_is_what_its_script_makes(tmp_path: Path) -> None:
    tools = str(CSV.parent.parent.parent / "tools")  # the script is not a job's runtime file
    sys.path.insert(0, tools)
    try:
        import make_mixed
    finally:
        sys.path.remove(tools)
    assert CSV.read_text() == "".join(",".join(r) + "\n" for r in make_mixed.rows())
    df = pd.read_csv(CSV)
    assert len(df) == 300 and df.isna().any().sum() == 5 and df["label"].dtype != float
    json.dumps(df.dtypes.astype(str).to_dict())


def test_the_file_is_read_once_per_job_and_the_pool_gets_the_frame(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The worker reads the CSV once (hold-out, splits, refit and the pool's processes use
    that frame); the pool's payload is the frame in the job's pool-data file, never the
    CSV's path, so no process parses the file again."""
    from searchd.worker import tables
    calls: list[Any] = []
    real = tables._csv
    monkeypatch.setattr(tables, "_csv", lambda *a: calls.append(a) or real(*a))
    monkeypatch.setattr(local_runner, "MMAP_BYTES", 0)
    settings = place(tmp_path, MIXED.read_text())
    settings = Settings(state_dir=settings.state_dir, jobs_dir=settings.jobs_dir, n_jobs=2,
                        report=False)
    run = JobRun(settings.state_dir / "j", "j", settings, Events(None))
    try:
        run.prepare()
        assert len(calls) == 1
        assert run.data is not None and run.runner is not None
        assert run.runner.X is run.data.X_train  # type: ignore[attr-defined]
        payload = run.runner._pool_payload()  # type: ignore[attr-defined]
        assert Path(payload).parent == settings.state_dir / "j" / "pool-data"
        X, _, _ = joblib.load(payload, mmap_mode="r")
        assert X.equals(run.data.X_train)
    finally:
        if run.runner is not None:
            run.runner.close()
    assert len(calls) == 1


def test_a_small_parquet_file_of_zeros_is_measured_by_its_footer(tmp_path: Path) -> None:
    pytest.importorskip("pyarrow")
    pq = tmp_path / "zeros.parquet"
    pd.DataFrame({"a": np.zeros(1_000_000, dtype=np.int64),
                  "label": np.zeros(1_000_000, dtype=np.int64)}).to_parquet(pq)
    assert pq.stat().st_size < 100_000  # 16 MB of values in a few kB
    text = '[data]\nsource = "parquet:data/zeros.parquet"\ntarget = "label"\n' \
           '[models.lr]\nestimator = "LogisticRegression"\n'
    settings = place(tmp_path / "run", text, data=pq, name="zeros.parquet")
    spec = parse_job(text.encode(), settings.jobs_dir / "j.toml", 10**6)
    with pytest.raises(DataError, match=r"zeros.parquet: its columns take 16.0 MB .*more "
                                        r"than max_data_bytes \(1.0 MB"):
        load_dataset(spec, True, max_bytes=1_000_000)


@pytest.mark.parametrize("data, message", [
    ('source = "npz:d.npz"\nfeatures = ["a"]',
     "data.features: is for csv: and parquet: sources (columns of a file)"),
    ('source = "csv:d.csv"\ntarget = "y"\nfeatures = ["a"]\ndrop = ["b"]',
     "data.drop: give features or drop, not both"),
    ('source = "csv:d.csv"\ntarget = "y"\nfeatures = []',
     "data.features: expected a list of column names, got []"),
    ('source = "parquet:d.parquet"', 'data.target: a parquet: source needs target = "<column>"'),
])
def test_features_and_drop_are_checked_with_the_job(data: str, message: str) -> None:
    text = f"[data]\n{data}\n[models.lr]\nestimator = \"LogisticRegression\"\n"
    with pytest.raises(JobSpecError) as e:
        parse_job(text.encode(), Path("jobs/j.toml"), 10**6)
    assert str(e.value) == f"jobs/j.toml: {message}"


@pytest.mark.parametrize("old, new, message", [
    ('columns = ["age", "income"]', 'columns = ["age", "incme"]',
     "preprocess[0].params.transformers[1].columns: {csv}: no column 'incme' among the "
     "features (4 columns)"),
    ('columns = ["age", "income"]', 'columns = ["age", "score"]',  # dropped by data.drop
     "preprocess[0].params.transformers[1].columns: {csv}: no column 'score'"),
    ('source = "csv:data/mixed.csv"\ntarget = "label"\ndrop = ["score"]',
     'source = "sklearn:iris"',
     "preprocess[0].params.transformers[0].columns: columns by name or dtype need a csv: or "
     "parquet: source (the data is an array)"),
])
def test_a_transformers_columns_are_checked_against_the_data(
        tmp_path: Path, old: str, new: str, message: str) -> None:
    """Caught when the data loads (worker and validate), not as a failure in every fit."""
    text = MIXED.read_text()
    assert old in text
    spec, s = _spec(tmp_path, text.replace(old, new, 1).replace(
        "test_size = 0.2\n", "test_size = 0.2\n" if "iris" not in new else ""))
    with pytest.raises(DataError) as e:
        load_dataset(spec, True)
    assert str(e.value).startswith(f"{spec.path}: ")
    assert message.format(csv=s.jobs_dir / "data" / "mixed.csv") in str(e.value)
