"""The worker: one process per running job, evaluating (candidate, fold) tasks.

Started by the supervisor as ``python -m searchd.worker``. This module is the process's
edge: its arguments (the job and the daemon's settings, serialised once), its signals (a
handler only sets a flag), its exit codes (:class:`~searchd.protocol.Exit`). The job itself
runs in :class:`~searchd.worker.job.JobRun`.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import signal
import sys
from collections.abc import Callable

from searchd import lifeline as guard
from searchd import protocol
from searchd.errors import CheckpointError, DataError, JobSpecError, SearchdError, StateLockedError
from searchd.protocol import Exit
from searchd.settings import Settings
from searchd.state.files import clean_temp_files, exclusive
from searchd.worker.dask_runner import ClusterUnavailableError
from searchd.worker.events import Events
from searchd.worker.job import POOL_DATA, JobRun

log = logging.getLogger("searchd.worker")


def main(argv: list[str] | None = None,
         stopped_early: Callable[[], bool] = lambda: False) -> int:
    p = argparse.ArgumentParser(prog="searchd.worker")
    p.add_argument("--job", required=True)
    p.add_argument("--events-fd", type=int)
    p.add_argument("--settings", type=protocol.decode_settings, required=True,
                   help="the daemon's settings (protocol.encode_settings)")
    args = p.parse_args(argv)
    settings: Settings = args.settings
    # joblib's resource tracker outlives this process by a moment on purpose: it removes the
    # semaphores and memory maps loky leaves at a fast exit. That is not worth a warning in
    # the daemon's log (the tracker inherits this environment when the pool starts).
    os.environ["PYTHONWARNINGS"] = ",".join(filter(None, [
        os.environ.get("PYTHONWARNINGS"),
        "ignore::UserWarning:joblib.externals.loky.backend.resource_tracker"]))
    logging.basicConfig(level=settings.log_level, stream=sys.stderr,
                        format=os.environ.get("SEARCHD_LOG_FORMAT", "%(name)s: %(message)s"))
    guard.die_with_parent()
    events = Events(args.events_fd)
    job_dir = settings.job_dir(args.job)
    run: JobRun | None = None
    stop = False

    def on_term(signum: int, frame: object) -> None:
        nonlocal stop
        stop = True
        if run is not None:
            run.stop_requested = True  # the control thread flushes and exits

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the supervisor decides; Ctrl-C hits the group
    stop = stop or stopped_early()  # a SIGTERM while this process was still importing
    if stop:
        log.info("%s: stopping: nothing to flush yet", args.job)
        events.send(protocol.Stopped())
        return Exit.STOPPED
    try:
        with exclusive(job_dir / "job.lock", f"job {args.job}"):
            clean_temp_files(job_dir)
            shutil.rmtree(job_dir / POOL_DATA, ignore_errors=True)  # a killed run's
            run = JobRun(job_dir, args.job, settings, events)
            run.stop_requested = run.stop_requested or stop
            code = run.run()
            run.guard.forget()  # every fit ended as it should: no record names a death
        # Skip loky's leisurely teardown (~0.6 s): everything is flushed and reported.
        logging.shutdown()
        guard.end_children(timeout=1.0)
        os._exit(code)
    except (JobSpecError, DataError) as e:
        events.send(protocol.Invalid(error=str(e)))
        log.error("%s: invalid: %s", args.job, e)
        return Exit.INVALID
    except ClusterUnavailableError as e:
        if run is not None:
            run.flush()  # keep every result that came back before the cluster went away
        events.send(protocol.Cluster(error=str(e)))
        log.error("%s: %s; the job waits and retries", args.job, e)
        return Exit.CLUSTER
    except StateLockedError as e:
        log.error("%s", e)
        return Exit.LOCKED
    except (CheckpointError, SearchdError) as e:
        if run is not None:
            run.guard.forget()
        events.send(protocol.Failed(error=str(e)))
        log.error("%s: %s", args.job, e)
        return Exit.FAILED

