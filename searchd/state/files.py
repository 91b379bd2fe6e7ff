"""Files in the state folder: atomic writes, private folders, reads and appends that never
follow a link, the state folder's own names, and locks.

Atomic write like borg's ``SaveFile``: a temp file in the same folder, write, flush,
``os.fsync``, ``os.replace``, fsync the folder. filelock gives mutual exclusion, not
durability; lock files are never deleted.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import secrets
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from searchd.errors import CheckpointError, StateLockedError

log = logging.getLogger(__name__)

KEY_FILE = "searchd.key"
TMP_MARK = ".tmp-"
QUARANTINE = "quarantine"
#: the default folder of the results published for the daemon's group
PUBLISHED = "published"
SUFFIX = ".ckpt"


# --- files -------------------------------------------------------------------------------------

def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes, durable: bool = True, mode: int = 0o600) -> None:
    """Write ``data`` to ``path`` so that readers see the old or the new file, never a mix.

    Temp file in the same folder, write, flush, fsync, ``os.replace``, fsync the
    folder; on any error the temp file is removed and the old file is untouched.
    """
    tmp = path.with_name(f".{path.name}{TMP_MARK}{os.getpid()}-{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), mode)  # exactly ``mode``, past the umask
            f.write(data)
            f.flush()
            if durable:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    if durable:
        fsync_dir(path.parent)


def clean_temp_files(folder: Path) -> int:
    """Remove temp files a killed writer left behind; returns how many."""
    n = 0
    for p in folder.glob(f".*{TMP_MARK}*"):
        with contextlib.suppress(FileNotFoundError):
            p.unlink()
            n += 1
    return n


class UnsafePathError(OSError):
    """A path inside the state folder that searchd will not use (not its own folder or file).

    An OSError, so that every writer's handling of a failed write applies to it too.
    """

    def __init__(self, path: Path, why: str) -> None:
        super().__init__(errno.EPERM, why, str(path))
        self.path, self.why = path, why

    def __str__(self) -> str:
        return f"{self.path}: {self.why}"

    def __reduce__(self) -> tuple[Any, ...]:
        return type(self), (self.path, self.why)


def _own_dir(path: Path, st: os.stat_result, mode: int = 0o700) -> None:
    """Refuse a folder that is not the daemon user's; make one open to others private
    (``mode``: 0700, or 0710 for a state folder the group passes through to publish)."""
    if not stat.S_ISDIR(st.st_mode):
        raise UnsafePathError(path, "is not a folder; searchd keeps its own folder here")
    if st.st_uid != os.geteuid():
        raise UnsafePathError(path, f"belongs to uid {st.st_uid}, not to searchd's user "
                                    f"({os.geteuid()}); refusing to use it")
    if st.st_mode & 0o077 != mode & 0o077:
        os.chmod(path, mode, follow_symlinks=False)
        if st.st_mode & 0o077 & ~mode:
            log.warning("%s: was mode %04o (open to others); made it %04o", path,
                        st.st_mode & 0o7777, mode)


def make_private_dir(path: Path) -> None:
    """``path`` as a folder of the daemon's own, mode 0700, never through a symlink.

    Inside the state folder a symbolic link is never followed: one found where a folder
    belongs (a job folder, ``quarantine``) is removed (only the link: its target is not
    touched) and a real folder made, with a warning. Parents are made as needed and
    followed as they are (the state folder itself may be a link the operator set up).
    """
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        os.mkdir(path, 0o700)
        return
    except FileExistsError:
        pass
    st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode):
        log.warning("%s: a symbolic link where searchd keeps a folder; removing the link "
                    "(not following it) and making the folder", path)
        os.unlink(path)
        os.mkdir(path, 0o700)
        return
    _own_dir(path, st)


#: what a state folder holds besides job folders (and temp files)
STATE_FILES = frozenset({KEY_FILE, "searchd.lock", "searchd.pid", "pause.json", QUARANTINE,
                         PUBLISHED})
JOB_FILES = ("summary.json", "job.toml", "job.json", "job.lock")


def _looks_like_state(folder: Path) -> bool:
    """Empty, or holding something searchd writes (its own files, a job folder)."""
    entries = list(os.scandir(folder))
    return not entries or any(
        e.name in STATE_FILES or TMP_MARK in e.name
        or (e.is_dir(follow_symlinks=False)
            and any(os.path.lexists(os.path.join(e.path, f)) for f in JOB_FILES))
        for e in entries)


def secure_state_dir(state_dir: Path, publish_inside: bool = False) -> None:
    """At the daemon's start: the state folder and every folder in it private (0700), no
    symbolic links used as job folders.

    The state folder itself may be a link (the operator's choice); inside it, a linked
    job folder is left alone but never loaded (see :func:`records.all_summaries`), a
    folder of another user is refused (``UnsafePathError``), and modes open to others
    are closed. With ``publish_inside`` (results published in ``state/published``) the
    state folder is 0710: the daemon's group may pass through it to ``published`` (which
    :mod:`searchd.state.published` keeps 2750) but not list it, and every other folder
    and file in it stays the daemon's alone.
    """
    try:
        state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not os.path.lexists(state_dir / KEY_FILE) and not _looks_like_state(state_dir):
            # A mistyped --state must not chmod someone's folders: only an empty folder
            # or one with searchd's own files in it is a state folder.
            raise CheckpointError(f"{state_dir}: not a searchd state folder (no {KEY_FILE}, "
                                  "no job folders) and not empty; refusing to use it")
        _own_dir(state_dir, os.stat(state_dir), 0o710 if publish_inside else 0o700)
        for entry in os.scandir(state_dir):
            if publish_inside and entry.name == PUBLISHED:
                continue  # the group's, by design (searchd.state.published checks it)
            if entry.is_dir(follow_symlinks=False):
                folder = Path(entry.path)
                _own_dir(folder, entry.stat(follow_symlinks=False))
                for sub in os.scandir(folder):
                    if sub.is_dir(follow_symlinks=False):
                        _own_dir(Path(sub.path), sub.stat(follow_symlinks=False))
            elif entry.is_symlink():
                log.warning("%s: a symbolic link in the state folder; searchd never follows "
                            "it", entry.path)
    except UnsafePathError as e:
        raise CheckpointError(f"{e} (state folder {state_dir})") from None
    except PermissionError as e:
        raise CheckpointError(f"{e.filename}: cannot make it private: {e.strerror}") from None


def read_private(path: Path) -> bytes:
    """The bytes of a regular file in the state folder, never through a symbolic link.

    FileNotFoundError if absent; :class:`UnsafePathError` for a link, a FIFO, a device
    or a folder (a FIFO would block the reader for ever).
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise UnsafePathError(path, "is a symbolic link; searchd does not follow links "
                                        "in its state folder") from None
        raise
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise UnsafePathError(path, "is not a regular file")
    with os.fdopen(fd, "rb") as f:
        return f.read()


def open_private_append(path: Path) -> int:
    """A file descriptor appending to ``path`` (0600), never through a symbolic link: a link
    found there is removed (its target untouched) and a fresh file made, with a warning."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        fd = os.open(path, flags, 0o600)
    except OSError as e:
        if e.errno != errno.ELOOP:
            raise
        log.warning("%s: a symbolic link; removing it (not following it) and starting the "
                    "file afresh", path)
        os.unlink(path)
        fd = os.open(path, flags | os.O_EXCL, 0o600)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise UnsafePathError(path, "is not a regular file")
    os.set_blocking(fd, True)
    return fd


# --- locks -------------------------------------------------------------------------------------

@contextlib.contextmanager
def exclusive(lock_path: Path, what: str, pid_file: Path | None = None) -> Iterator[FileLock]:
    """Hold ``lock_path`` or fail at once with a message naming the holder's pid."""
    lock = FileLock(str(lock_path), timeout=0, mode=0o600)
    try:
        lock.acquire()
    except Timeout:
        holder = ""
        if pid_file is not None:
            with contextlib.suppress(OSError, ValueError):
                holder = f" (pid {int(pid_file.read_text().split()[0])})"
        raise StateLockedError(f"{what} is already in use by another searchd{holder}: "
                               f"{lock_path}") from None
    try:
        if pid_file is not None:
            atomic_write(pid_file, f"{os.getpid()}\n".encode(), durable=False)
        yield lock
    finally:
        lock.release()
