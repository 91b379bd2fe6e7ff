"""Where a job's data files may come from, and opening one without being fooled.

A ``csv:``/``parquet:``/``npz:`` path is resolved (links, ``..``) and must land under the
job's jobs folder or the daemon's ``data_dirs``, never under the state folder; it is checked before
the open and again on the file actually opened, which must be a regular file. A refused
path is an error that says nothing about the file, not even whether it exists.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from pathlib import Path

from searchd.errors import DataError
from searchd.jobs.messages import clip
from searchd.jobs.spec import JobSpec

#: a path in an error message is cut after this many characters
PATH_CHARS = 1000


def data_path(job: JobSpec, rest: str, where: str) -> Path:
    try:
        p = Path(rest).expanduser()
    except RuntimeError:  # ~user of no such user
        raise DataError(f"{where}: {clip(rest, PATH_CHARS)}: no such home folder") from None
    return p if p.is_absolute() else job.data.base_dir / p


#: checks a path (as resolved) against the folders data may come from; raises DataError
Check = Callable[[Path, str, str], None]


def _under(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def path_check(job: JobSpec, data_dirs: tuple[Path, ...], state_dir: Path | None) -> Check:
    """The check of one job: its jobs folder and ``data_dirs`` allowed, the state folder not.

    Paths are compared once every symbolic link and ``..`` is resolved, so neither a
    link in the jobs folder nor ``../state/...`` reaches a file outside. The message
    says which folders are allowed and nothing about the file (not even whether it exists).
    """
    allowed = [os.path.realpath(d) for d in (job.data.base_dir, *data_dirs)]
    state = None if state_dir is None else os.path.realpath(state_dir)

    def check(real: Path, shown: str, where: str) -> None:
        r = str(real)
        if state is not None and _under(r, state):
            raise DataError(f"{where}: {shown}: is in the state folder; searchd never reads "
                            "data from there")
        if not any(_under(r, a) for a in allowed):
            raise DataError(f"{where}: {shown}: data files are read only from the job's "
                            f"folder ({clip(str(job.data.base_dir), PATH_CHARS)}) and the "
                            "daemon's data_dirs (after resolving links and '..')")
    return check


def open_data(path: Path, where: str, check: Check) -> int:
    """A file descriptor on the regular file ``path``; anything else is a DataError.

    The path must resolve into an allowed folder (``check``), before it is opened (an
    open alone can have effects, on a device) and again after, on the file actually
    opened (``/proc/self/fd``), so that a link swapped in between gains nothing.
    A FIFO would block the worker for ever and a device (``/dev/zero``) never ends, so
    both are refused by looking at the opened file (``O_NONBLOCK`` keeps the open
    itself from blocking).
    """
    shown = clip(str(path), PATH_CHARS)
    try:
        real = Path(os.path.realpath(path))
        check(real, shown, where)
        fd = os.open(real, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOFOLLOW)
    except OSError as e:
        raise DataError(f"{where}: {shown}: {e.strerror or e}") from None
    except ValueError:  # an embedded NUL
        raise DataError(f"{where}: {shown}: not a usable path") from None
    try:
        opened = Path(os.readlink(f"/proc/self/fd/{fd}"))
    except OSError:  # no /proc: the check before the open stands
        opened = real
    try:
        check(opened, shown, where)
    except DataError:
        os.close(fd)
        raise
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        what = "Is a directory" if stat.S_ISDIR(st.st_mode) else \
            "not a regular file (a FIFO, device or socket)"
        raise DataError(f"{where}: {shown}: {what}")
    return fd
