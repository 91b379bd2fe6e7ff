"""Fault injection for the test suite, loaded through PYTHONPATH by the daemon and worker.

While the file named by $SEARCHD_TEST_DISK_FAULT exists, every fsync fails with the errno
it names (ENOSPC by default, or EIO): the way a full or failing disk shows itself to a
durable writer. Production code carries no test hooks; this shim stands in for the disk.
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
