"""The state folder's HMAC key and the signed envelope every checkpoint is written in.

A checkpoint file is ``MAGIC + HMAC-SHA256(key, context || payload) + payload`` where the
payload is a pickle searchd wrote itself and the context names the job and the checkpoint,
so a file copied from another job or state directory fails. The MAC is checked with
:func:`hmac.compare_digest` *before* anything is unpickled.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import hmac
import importlib.metadata
import logging
import os
import pickle
import platform
import secrets
from pathlib import Path
from typing import Any

from searchd.errors import CheckpointError
from searchd.state.files import KEY_FILE, SUFFIX, TMP_MARK, UnsafePathError, fsync_dir, read_private

log = logging.getLogger(__name__)

MAGIC = b"SEARCHD-CKPT-1\n"
MAC_SIZE = hashlib.sha256().digest_size


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


#: the libraries whose versions a checkpoint records, by import name and distribution name
VERSIONED = (("sklearn", "scikit-learn"), ("numpy", "numpy"), ("scipy", "scipy"))


@functools.cache
def versions() -> dict[str, str]:
    """The versions a checkpoint records, read from the installed packages' metadata: importing
    scikit-learn only to read its ``__version__`` cost every reader (``searchd show``,
    ``verify``) about 1.5 s of CPU. Cached: a process does not change its libraries."""
    out = {"python": platform.python_version()}
    for mod, dist in VERSIONED:
        try:
            out[mod] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
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


