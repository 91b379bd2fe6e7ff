"""The signed checkpoints of one job folder.

Each checkpoint keeps one previous generation (``<name>.prev.ckpt``): a write rotates
current → prev, then moves the new file into place, so a crash at any instant leaves at
least one good generation. A file that does not verify is never loaded, only moved aside
to ``quarantine/``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from filelock import FileLock

from searchd.errors import CheckpointError
from searchd.state.files import (
    QUARANTINE,
    SUFFIX,
    UnsafePathError,
    atomic_write,
    fsync_dir,
    make_private_dir,
    read_private,
)
from searchd.state.signing import dumps, loads, verified_payload

log = logging.getLogger(__name__)

LOCK_TIMEOUT = 30.0


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


