"""Fault injection for the test suite, loaded through PYTHONPATH by the daemon and worker.

While the file named by $SEARCHD_TEST_DISK_FAULT exists, every fsync fails with the errno
it names (ENOSPC by default, or EIO): the way a full or failing disk shows itself to a
durable writer. Production code carries no test hooks; this shim stands in for the disk.

While the file named by $SEARCHD_TEST_FIT_PACE holds a number of seconds, each fit waits
that long first (see the pacing section).
"""

from __future__ import annotations

import errno
import os

_flag = os.environ.get("SEARCHD_TEST_DISK_FAULT")

if _flag:
    _real_fsync = os.fsync

    def _fsync(fd: int) -> None:
        try:
            with open(_flag) as f:
                name = f.read().strip() or "ENOSPC"
        except FileNotFoundError:
            return _real_fsync(fd)
        code = getattr(errno, name)
        raise OSError(code, os.strerror(code))

    os.fsync = _fsync


# --- pacing ---------------------------------------------------------------------------------
# While the file named by $SEARCHD_TEST_FIT_PACE holds a number of seconds, each (candidate,
# fold) evaluation in the job's processes sleeps that long before it fits: a job lasts as long
# as a test of kills needs, while the machine's cores stay free for the other tests, and the
# test can speed it up (write 0) once its kills are done. The scores are untouched.

_pace_file = os.environ.get("SEARCHD_TEST_FIT_PACE")

if _pace_file:
    import importlib.abc
    import importlib.machinery
    import sys
    import time
    from typing import Any

    _TARGET = "searchd.worker.evaluate"

    def _pace() -> float:
        try:
            with open(_pace_file) as f:  # type: ignore[arg-type]
                return float(f.read().strip() or 0)
        except (OSError, ValueError):
            return 0.0

    class _Pacer(importlib.abc.MetaPathFinder):
        def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
            if name != _TARGET:
                return None
            spec = importlib.machinery.PathFinder.find_spec(name, path)
            if spec is None or spec.loader is None:
                return spec
            real_exec = spec.loader.exec_module

            def exec_module(module: Any) -> None:
                real_exec(module)
                evaluate = module.evaluate

                def paced(*args: Any, **kwargs: Any) -> Any:
                    time.sleep(_pace())
                    return evaluate(*args, **kwargs)

                module.evaluate = paced

            spec.loader.exec_module = exec_module  # type: ignore[method-assign]
            return spec

    sys.meta_path.insert(0, _Pacer())
