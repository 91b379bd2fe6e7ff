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
# fold) evaluation in the job's processes sleeps that long before it fits (fitpace.py).

_pace_file = os.environ.get("SEARCHD_TEST_FIT_PACE")

if _pace_file:
    import importlib.abc
    import importlib.machinery
    import sys
    from typing import Any

    from fitpace import paced  # next to this file, on the same PYTHONPATH

    _TARGET = "searchd.worker.evaluate"

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
                module.evaluate = paced(module.evaluate, _pace_file)  # type: ignore[arg-type]

            spec.loader.exec_module = exec_module  # type: ignore[method-assign]
            return spec

    sys.meta_path.insert(0, _Pacer())
