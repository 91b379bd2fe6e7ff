"""Signed, atomic checkpoints under a file lock.

A checkpoint file is ``MAGIC + HMAC-SHA256(key, context || payload) + payload``
where the payload is a pickle searchd wrote itself and the context names the
job and the checkpoint, so a file copied from another job or state directory
fails. The MAC is checked with :func:`hmac.compare_digest` *before* anything is
unpickled; a file that fails is never loaded, only moved aside.

Each checkpoint keeps one previous generation (``<name>.prev.ckpt``): a write
rotates current → prev, then moves the new file into place, so a crash at any
instant leaves at least one good generation.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import hmac
import logging
import os
import pickle
import platform
import secrets
import stat
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from searchd.errors import CheckpointError, StateLockedError

log = logging.getLogger(__name__)

MAGIC = b"SEARCHD-CKPT-1\n"
MAC_SIZE = hashlib.sha256().digest_size
KEY_FILE = "searchd.key"
SUFFIX = ".ckpt"
TMP_MARK = ".tmp-"
QUARANTINE = "quarantine"
LOCK_TIMEOUT = 30.0


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
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as f:
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


def _own_dir(path: Path, st: os.stat_result) -> None:
    """Refuse a folder that is not the daemon user's; make one open to others private."""
    if not stat.S_ISDIR(st.st_mode):
        raise UnsafePathError(path, "is not a folder; searchd keeps its own folder here")
    if st.st_uid != os.geteuid():
        raise UnsafePathError(path, f"belongs to uid {st.st_uid}, not to searchd's user "
                                    f"({os.geteuid()}); refusing to use it")
    if st.st_mode & 0o077:
        os.chmod(path, 0o700, follow_symlinks=False)
        log.warning("%s: was mode %04o (open to others); made it 0700", path,
                    st.st_mode & 0o7777)


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
                         "published"})
JOB_FILES = ("summary.json", "job.toml", "job.json", "job.lock")


def _looks_like_state(folder: Path) -> bool:
    """Empty, or holding something searchd writes (its own files, a job folder)."""
    entries = list(os.scandir(folder))
    return not entries or any(
        e.name in STATE_FILES or TMP_MARK in e.name
        or (e.is_dir(follow_symlinks=False)
            and any(os.path.lexists(os.path.join(e.path, f)) for f in JOB_FILES))
        for e in entries)


def secure_state_dir(state_dir: Path) -> None:
    """At the daemon's start: the state folder and every folder in it private (0700), no
    symbolic links used as job folders.

    The state folder itself may be a link (the operator's choice); inside it, a linked
    job folder is left alone but never loaded (see :func:`records.all_summaries`), a
    folder of another user is refused (``UnsafePathError``), and modes open to others
    are closed.
    """
    try:
        state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not os.path.lexists(state_dir / KEY_FILE) and not _looks_like_state(state_dir):
            # A mistyped --state must not chmod someone's folders: only an empty folder
            # or one with searchd's own files in it is a state folder.
            raise CheckpointError(f"{state_dir}: not a searchd state folder (no {KEY_FILE}, "
                                  "no job folders) and not empty; refusing to use it")
        _own_dir(state_dir, os.stat(state_dir))
        for entry in os.scandir(state_dir):
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


# --- key and signatures ------------------------------------------------------------------------

def load_key(state_dir: Path, create: bool = False) -> bytes:
    """The state directory's HMAC key; made (0600) on first use by the daemon.

    The key is written like every other file: a temp file, fsynced, then put in place
    (with ``link``, so that of two daemons racing, one key wins and both use it). A write
    that fails (a full disk) leaves no key file at all, and the next start tries again.
    A key shorter than 32 bytes signed nothing (it is refused); one that an older version
    left short when the disk was full is replaced when no checkpoint exists.
    """
    path = state_dir / KEY_FILE
    try:
        key = read_private(path)  # a link, a folder (say, a job named so once), ...: refused
        mode = path.lstat().st_mode & 0o777
        if mode & 0o077:
            raise CheckpointError(f"{path}: key is readable or writable by others (mode "
                                  f"{mode:04o}); refusing it: chmod 600 {path}")
    except UnsafePathError as e:
        raise CheckpointError(f"{e}; refusing it as the key (move it away)") from None
    except FileNotFoundError:
        if not create:
            raise CheckpointError(f"{path}: no key (has the daemon run on this state "
                                  "directory?)") from None
        _refuse_new_key_over_checkpoints(state_dir, path, "is missing")
        return _new_key(state_dir, path)
    except PermissionError:
        raise CheckpointError(f"{path}: permission denied (the key is readable by the daemon's "
                              "user only)") from None
    if len(key) < 32:
        if create and _no_checkpoints(state_dir):
            log.warning("%s: a key of %d bytes (left by a write that failed, e.g. on a full "
                        "disk) signed nothing; making a new one", path, len(key))
            path.unlink()
            return _new_key(state_dir, path)
        raise CheckpointError(f"{path}: key is too short ({len(key)} bytes); refusing to use it")
    return key


def _no_checkpoints(state_dir: Path) -> bool:
    return next(state_dir.glob(f"*/*{SUFFIX}"), None) is None if state_dir.is_dir() else True


def _refuse_new_key_over_checkpoints(state_dir: Path, path: Path, what: str) -> None:
    existing = next(state_dir.glob(f"*/*{SUFFIX}"), None) if state_dir.is_dir() else None
    if existing is not None:
        # a new key would orphan every existing checkpoint: refuse instead
        raise CheckpointError(f"{path}: the key {what} but checkpoints exist (e.g. "
                              f"{existing}); restore the key, or move the job folders "
                              "away to start afresh")


def _new_key(state_dir: Path, path: Path) -> bytes:
    """Make the key atomically: temp file, fsync, ``link`` into place, fsync the folder."""
    state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    key = secrets.token_bytes(32)
    tmp = path.with_name(f".{path.name}{TMP_MARK}{os.getpid()}-{secrets.token_hex(4)}")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(key)
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, path)  # never replaces: a key another process made first wins
        except FileExistsError:
            return load_key(state_dir)
        try:
            fsync_dir(state_dir)
        except OSError:
            path.unlink()  # not durable: it signed nothing yet, so it goes
            raise
    except OSError as e:
        raise CheckpointError(f"{path}: cannot write the key: {e.strerror or e} (nothing "
                              "was left behind; the next start tries again)") from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    return key


def _mac(key: bytes, context: str, payload: bytes) -> bytes:
    m = hmac.new(key, digestmod=hashlib.sha256)
    m.update(context.encode() + b"\0")
    m.update(payload)
    return m.digest()


def sign(key: bytes, context: str, payload: bytes) -> bytes:
    return MAGIC + _mac(key, context, payload) + payload


def verified_payload(key: bytes, context: str, blob: bytes) -> bytes:
    """The payload of ``blob`` if its signature verifies; else CheckpointError with the reason."""
    if not blob:
        raise CheckpointError("empty file")
    if not blob.startswith(MAGIC):
        raise CheckpointError("not a searchd checkpoint (no signature header)")
    if len(blob) < len(MAGIC) + MAC_SIZE:
        raise CheckpointError("truncated (shorter than its signature)")
    mac = blob[len(MAGIC):len(MAGIC) + MAC_SIZE]
    payload = blob[len(MAGIC) + MAC_SIZE:]
    if not hmac.compare_digest(mac, _mac(key, context, payload)):
        raise CheckpointError("signature does not verify (corrupt, truncated, or written "
                              "with another key or for another job)")
    return payload


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for mod in ("sklearn", "numpy", "scipy"):
        try:
            out[mod] = __import__(mod).__version__
        except ImportError:
            pass
    return out


def dumps(key: bytes, context: str, obj: Any) -> bytes:
    payload = pickle.dumps({"versions": versions(), "data": obj}, protocol=5)
    return sign(key, context, payload)


def loads(key: bytes, context: str, blob: bytes, where: str) -> Any:
    payload = verified_payload(key, context, blob)
    envelope = pickle.loads(payload)  # verified: written by this daemon's key
    written = envelope.get("versions", {})
    now = versions()
    diff = {k: (v, now.get(k)) for k, v in written.items() if now.get(k) != v}
    if diff:
        log.warning("%s: written with %s; running %s", where,
                    ", ".join(f"{k} {a}" for k, (a, _) in diff.items()),
                    ", ".join(f"{k} {b}" for k, (_, b) in diff.items()))
    return envelope["data"]


# --- checkpoints of one job --------------------------------------------------------------------

@dataclass(frozen=True)
class Refused:
    """A checkpoint file that did not verify, and why."""

    path: Path
    reason: str


class CheckpointStore:
    """The checkpoints of one job folder: ``<name>.ckpt`` and ``<name>.prev.ckpt``."""

    def __init__(self, job_dir: Path, key: bytes, job_id: str) -> None:
        self.dir = job_dir
        self.key = key
        self.job_id = job_id
        self.lock = FileLock(str(job_dir / "checkpoint.lock"), timeout=LOCK_TIMEOUT, mode=0o600)
        #: checkpoints whose current file this process wrote or verified: safe to rotate
        self._trusted: set[str] = set()

    def path(self, name: str, prev: bool = False) -> Path:
        return self.dir / f"{name}{'.prev' if prev else ''}{SUFFIX}"

    def context(self, name: str) -> str:
        return f"{self.job_id}/{name}"

    def write(self, name: str, obj: Any) -> int:
        """Sign and write a new generation; returns the bytes written."""
        blob = dumps(self.key, self.context(name), obj)
        cur, prev = self.path(name), self.path(name, prev=True)
        with self.lock:
            tmp_target = self.dir / f".{name}.next"
            atomic_write(tmp_target, blob)  # the new generation is durable before rotation
            if cur.exists() and self._rotatable(name, cur):
                os.replace(cur, prev)
            os.replace(tmp_target, cur)
            fsync_dir(self.dir)
            self._trusted.add(name)
        return len(blob)

    def write_once(self, name: str, obj: Any) -> int:
        """Sign and write a file that is never rewritten (no previous generation)."""
        blob = dumps(self.key, self.context(name), obj)
        with self.lock:
            atomic_write(self.path(name), blob)
        return len(blob)

    def remove(self, name: str) -> None:
        with self.lock:
            self.path(name).unlink(missing_ok=True)

    def _rotatable(self, name: str, cur: Path) -> bool:
        """Only a good file may become the previous generation; a bad one is moved aside."""
        if name in self._trusted:
            return True
        try:
            verified_payload(self.key, self.context(name), read_private(cur))
            return True
        except UnsafePathError as e:
            self.quarantine(cur, e.why)
            return False
        except CheckpointError as e:
            self.quarantine(cur, e.message)
            return False

    def read(self, name: str, quarantine: bool = False) -> tuple[Any | None, list[Refused]]:
        """The newest generation that verifies (None if none), and what was refused."""
        refused: list[Refused] = []
        with self.lock:
            blobs: list[tuple[Path, bytes | UnsafePathError]] = []
            # .next, when present, is the newest complete generation (a crash hit the rotation)
            for p in (self.dir / f".{name}.next", self.path(name), self.path(name, prev=True)):
                try:
                    blobs.append((p, read_private(p)))
                except FileNotFoundError:
                    continue
                except UnsafePathError as e:  # never read; moved aside like a bad checkpoint
                    blobs.append((p, e))
        for p, blob in blobs:
            try:
                if isinstance(blob, UnsafePathError):
                    raise CheckpointError(blob.why)
                data = loads(self.key, self.context(name), blob, str(p))
                if p == self.path(name):
                    self._trusted.add(name)
                return data, refused
            except CheckpointError as e:
                refused.append(Refused(p, e.message))
                if quarantine:  # the worker's read; CLI readers raise the reason instead
                    log.error("%s: refused checkpoint %s: %s", self.job_id, p, e.message)
                    self.quarantine(p, e.message)
            except (pickle.UnpicklingError, EOFError, AttributeError, ImportError) as e:
                # signed by us yet unreadable: e.g. written by an incompatible version
                refused.append(Refused(p, f"verified but unreadable: {e}"))
                if quarantine:
                    log.error("%s: unreadable checkpoint %s: %s", self.job_id, p, e)
                    self.quarantine(p, f"verified but unreadable: {e}")
        return None, refused

    def quarantine(self, path: Path, reason: str) -> Path:
        qdir = self.dir / QUARANTINE
        make_private_dir(qdir)
        stamp = time.strftime("%Y%m%dT%H%M%S")
        dest = qdir / f"{path.name}.{stamp}-{secrets.token_hex(2)}"
        # Through a descriptor of the folder opened without following a link: a link put
        # in its place after the check above cannot send the file anywhere else.
        qfd = os.open(qdir, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            with self.lock:
                with contextlib.suppress(FileNotFoundError):
                    os.replace(path, dest.name, dst_dir_fd=qfd)
            fd = os.open(f"{dest.name}.reason", os.O_WRONLY | os.O_CREAT | os.O_EXCL
                         | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=qfd)
            with os.fdopen(fd, "wb") as f:
                f.write((reason + "\n").encode())
        finally:
            os.close(qfd)
        log.warning("%s: moved %s to %s: %s", self.job_id, path.name, dest, reason)
        return dest

    def names(self) -> list[str]:
        return sorted({p.name[: -len(SUFFIX)].removesuffix(".prev")
                       for p in self.dir.glob(f"*{SUFFIX}")})

    def verify_all(self) -> list[tuple[Path, str | None]]:
        """Every checkpoint file's verdict (None = good), without unpickling anything."""
        out: list[tuple[Path, str | None]] = []
        for p in sorted(self.dir.glob(f"*{SUFFIX}")):
            name = p.name[: -len(SUFFIX)].removesuffix(".prev")
            try:
                verified_payload(self.key, self.context(name), read_private(p))
                out.append((p, None))
            except UnsafePathError as e:
                out.append((p, e.why))
            except CheckpointError as e:
                out.append((p, e.message))
        return out


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
