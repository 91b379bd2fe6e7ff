"""Issue 18, item 3: a job cannot take more than its share.

The number of fits, the data (before it is read: a generator's parameters, an ``.npz``'s
headers, a CSV's size and width), the CV splits, the time a job holds the only slot
(``max_job_seconds``, stepped daemon) and a job file's priority (``max_priority``) are all
bounded by daemon settings."""

from __future__ import annotations

import logging
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import pytest
from test_daemon_step import EPOCH, JOB, rig, running

from searchd import protocol
from searchd.errors import DataError, JobSpecError, SettingsError
from searchd.jobs.limits import GENERATORS, JobLimits, effective_priority, generator_bytes
from searchd.jobs.load import parse_job
from searchd.protocol import Exit
from searchd.settings import Settings, settings_from
from searchd.state.records import JobState
from searchd.supervisor.exits import TIME_SLICE
from searchd.worker.data import load_dataset
from searchd.worker.tables import MAX_COLUMNS

pytestmark = pytest.mark.timeout(60)

S = JobState
LIMITS = JobLimits.of(Settings())


def job(tmp_path: Path, data: str, cv: int = 3, grid: str = "[1, 3]") -> tuple[bytes, Path]:
    text = f"""
[data]
{data}
[search]
cv = {cv}
[models.knn]
estimator = "KNeighborsClassifier"
grid = {{ n_neighbors = {grid} }}
"""
    path = tmp_path / "j.toml"
    path.write_text(text)
    return text.encode(), path


def load(tmp_path: Path, data: str, cv: int = 3, max_bytes: int = LIMITS.max_data_bytes,
         classification: bool = True) -> None:
    raw, path = job(tmp_path, data, cv)
    spec = parse_job(raw, path, 10**6)  # candidates only: the worker's own checks are tried
    load_dataset(spec, classification=classification, max_bytes=max_bytes)


# --- fits --------------------------------------------------------------------------------------

def test_fits_are_bounded_not_only_candidates(tmp_path: Path) -> None:
    raw, path = job(tmp_path, 'source = "sklearn:iris"', cv=4000,
                    grid="{ range = [1, 301] }")
    with pytest.raises(JobSpecError) as e:
        parse_job(raw, path, LIMITS)
    assert str(e.value) == (f"{path}: search.cv: 300 candidates × 4,000 folds = 1,200,000 "
                            "fits, more than max_fits (1,000,000)")
    assert parse_job(raw, path, JobLimits(max_fits=1_200_000)).fits_total == 1_200_000


def test_cv_4000_on_4000_rows_is_refused_before_the_splits_are_made(tmp_path: Path) -> None:
    data = 'source = "sklearn:make_regression"\nparams = { n_samples = 4000 }'
    load(tmp_path, data, cv=40, classification=False)  # a usual cv on the same data is fine
    tracemalloc.start()
    try:
        with pytest.raises(DataError) as e:  # unstratified: 4,000 folds of one row each
            load(tmp_path, data, cv=4000, classification=False)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert "search.cv: 4,000 folds of 4,000 training samples keep 128.0 MB" in str(e.value)
    assert "more than max_data_bytes (104.9 MB" in str(e.value)
    assert peak < 20e6  # no split was made (they would take 128 MB)


# --- data, before it is loaded -------------------------------------------------------------------

def zeros_npz(path: Path, rows: int, cols: int) -> None:
    """An .npz whose X holds rows × cols float64 zeros, written in 1 MB pieces (never held)."""
    header = {"descr": "<f8", "fortran_order": False, "shape": (rows, cols)}
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        with zf.open("X.npy", "w", force_zip64=True) as f:
            np.lib.format.write_array_header_1_0(f, header)
            chunk = bytes(1 << 20)
            left = rows * cols * 8
            while left:
                f.write(chunk[:min(left, len(chunk))])
                left -= min(left, len(chunk))
        with zf.open("y.npy", "w") as f:
            np.lib.format.write_array(f, np.zeros(rows, dtype=np.int64))


@pytest.mark.timeout(120)
def test_a_small_npz_of_zeros_is_measured_by_its_headers_not_expanded(tmp_path: Path) -> None:
    npz = tmp_path / "bomb.npz"
    zeros_npz(npz, 117_500, 1000)  # 940 MB of zeros
    assert npz.stat().st_size < 2e6
    tracemalloc.start()
    try:
        with pytest.raises(DataError) as e:
            load(tmp_path, f'source = "npz:{npz.name}"')
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert str(e.value) == (f"{tmp_path / 'j.toml'}: data.source: {npz}: its arrays X and y "
                            "take 940.9 MB (940,940,000 bytes), more than max_data_bytes "
                            "(104.9 MB (104,857,600 bytes))")
    assert peak < 20e6


def test_an_npz_within_the_limit_loads(tmp_path: Path) -> None:
    np.savez_compressed(tmp_path / "ok.npz", X=np.zeros((1000, 10)), y=np.arange(1000) % 2)
    assert (tmp_path / "ok.npz").stat().st_size < 80_000
    load(tmp_path, 'source = "npz:ok.npz"')
    with pytest.raises(DataError, match=r"its arrays X and y take 88.0 kB \(88,000 bytes\), "
                                        r"more than max_data_bytes \(80.0 kB"):
        load(tmp_path, 'source = "npz:ok.npz"', max_bytes=80_000)


@pytest.mark.parametrize("params, message", [
    ("{ n_samples = 10_000_000, n_features = 1000 }", "sklearn:make_classification would make "
     "160.1 GB"),
    ("{ n_samples = 1_000_000_000 }", "sklearn:make_classification would make 328.0 GB"),
])
def test_generators_are_measured_by_their_parameters(tmp_path: Path, params: str,
                                                     message: str) -> None:
    data = f'source = "sklearn:make_classification"\nparams = {params}'
    raw, path = job(tmp_path, data)
    with pytest.raises(JobSpecError) as e:  # in the supervisor: never queued
        parse_job(raw, path, LIMITS)
    assert str(e.value).startswith(f"{path}: data.params: {message}")
    assert str(e.value).endswith("more than max_data_bytes (104.9 MB (104,857,600 bytes))")
    tracemalloc.start()
    try:
        with pytest.raises(DataError, match="more than max_data_bytes"):  # and in the worker
            load(tmp_path, data)
        assert tracemalloc.get_traced_memory()[1] < 20e6
    finally:
        tracemalloc.stop()


def test_generator_sizes_cover_lists_and_every_generator_of_x_and_y() -> None:
    assert generator_bytes("make_moons", {"n_samples": [10, 20]}) == 30 * 3 * 8
    assert generator_bytes("make_regression", {"n_samples": 10, "n_features": 5,
                                               "n_targets": 2}) == (10 * 7 + 2 * 5) * 8
    assert generator_bytes("make_low_rank_matrix", {}) is None  # refused: no (X, y)
    import sklearn.datasets as ds
    for name in GENERATORS:
        X, y = getattr(ds, name)()[:2]
        need = generator_bytes(name, {})
        assert need is not None and need >= X.nbytes + np.asarray(y).nbytes, name


def test_a_csv_is_bounded_by_its_size_its_width_and_its_cells(tmp_path: Path) -> None:
    (tmp_path / "big.csv").write_text("a,y\n" + "1,0\n" * 30_000)
    with pytest.raises(DataError, match=r"big.csv is 120.0 kB \(120,004 bytes\), more than "
                                        r"max_data_bytes \(100.0 kB \(100,000 bytes\)\)"):
        load(tmp_path, 'source = "csv:big.csv"\ntarget = "y"', max_bytes=100_000)
    # 4 bytes of text per row, 16 bytes of 8-byte cells: bounded by its lines before it is
    # parsed
    with pytest.raises(DataError, match=r"big.csv: its 30,000 lines of 2 columns take \(as "
                                        r"8-byte values\) 480.0 kB \(480,000 bytes\), more "
                                        r"than max_data_bytes"):
        load(tmp_path, 'source = "csv:big.csv"\ntarget = "y"', max_bytes=200_000)
    load(tmp_path, 'source = "csv:big.csv"\ntarget = "y"', max_bytes=2_000_000)
    wide = tmp_path / "wide.csv"
    wide.write_text(",".join(f"c{i}" for i in range(MAX_COLUMNS)) + ",y\n")
    with pytest.raises(DataError, match="its header has more than 100,000 columns"):
        load(tmp_path, 'source = "csv:wide.csv"\ntarget = "y"')


# --- max_priority --------------------------------------------------------------------------------

def test_priority_is_clipped_when_jobs_are_ordered_with_a_log_line(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    assert effective_priority(10**9, 100) == 100 and effective_priority(-10**9, 100) == -100
    caplog.set_level(logging.INFO, "searchd")
    with rig(tmp_path, max_priority=100) as r:
        r.write("old.toml", "priority = 100\n" + JOB, mtime=EPOCH - 100)
        r.write("greedy.toml", "priority = 1000000000\n" + JOB, mtime=EPOCH)
        r.scan_step()
        assert r.worker is not None and r.worker.job_id == "old"  # a tie: older first
        assert r.rec("greedy").priority == 10**9  # what the file says, shown as it is
        assert "greedy: priority 1000000000 clipped to 100 (max_priority)" in caplog.text


def test_limit_settings_are_checked() -> None:
    for key, value, message in (("max_fits", 0, "max_fits: expected at least 1, got 0"),
                                ("max_data_bytes", 0, "max_data_bytes: expected at least 1"),
                                ("max_priority", -1, "max_priority: must not be negative"),
                                ("max_job_seconds", -1, "max_job_seconds: must not be negative")):
        with pytest.raises(SettingsError, match=message):
            settings_from({key: value}, "test")


# --- max_job_seconds (the daemon stepped) -------------------------------------------------------

def test_a_long_job_yields_the_only_slot_and_queues_behind_the_others(tmp_path: Path) -> None:
    with rig(tmp_path, max_job_seconds=10.0) as r:
        a = running(r, "a")
        a.progress(2)
        r.step(n=15)  # nobody waits: a runs on past its 10 s
        assert r.worker is a and not a.terms
        r.write("b.toml", mtime=EPOCH - 1000)  # older, yet it waits its turn
        r.write("c.toml", mtime=EPOCH - 500)
        r.scan_step()
        assert a.terms == [TIME_SLICE]  # a warm stop: SIGTERM, the worker flushes, exits
        r.step()
        assert a.closed
        assert r.rec("a").state == S.QUEUED and r.rec("a").fits_done == 2  # results kept
        assert "ran for max_job_seconds (10 s) while other jobs waited; requeued behind " \
               "them, results kept" in (r.summary("a")["error"] or "")
        order = []
        for _ in range(4):
            w = r.worker
            assert w is not None
            order.append(w.job_id)
            r.step(seconds=5.0, n=2)  # each runs its 10 s, then yields
            assert w.terms == [TIME_SLICE]
            r.step()  # its exit is seen, the next one starts
        assert order == ["b", "c", "a", "b"]
        assert r.rec("b").turn == 5 and r.summary("b")["turn"] == 5


def test_paused_time_does_not_count_and_a_job_finishing_in_its_slot_just_finishes(
        tmp_path: Path) -> None:
    with rig(tmp_path, max_job_seconds=10.0) as r:
        a = running(r, "a")
        r.write("b.toml")
        r.scan_step()
        r.sampler.load = 0.9  # someone else's load: the worker is suspended
        r.step(n=30)
        assert ("suspend", a.pid) in r.calls and not a.terms
        assert r.rec("a").run_seconds < 10
        a.exit(Exit.DONE, protocol.Done())
        r.sampler.load = 0.0
        r.step(n=8)
        assert r.rec("a").state == S.DONE and r.rec("a").turn == 0
