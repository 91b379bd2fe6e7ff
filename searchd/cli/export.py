"""Write a job's best fitted model to a file: pickle, joblib or skops."""

from __future__ import annotations

import contextlib
import os
import pickle
import secrets
import stat
from pathlib import Path
from typing import Any

from searchd.errors import NotFoundError, SearchdError
from searchd.state.files import fsync_dir
from searchd.state.read import job_store, read_checkpoint, read_job_results
from searchd.state.results import DONE, best_type

FORMATS = ("pickle", "joblib", "skops")


def best_model(state_dir: Path, job_id: str, model: str | None,
               history: int | None = None) -> tuple[str, Any]:
    """(model type, fitted estimator): of ``model``, or of the best finished type (of the
    job's archived results ``history``, when given)."""
    store = job_store(state_dir, job_id, history)
    results = read_job_results(store).models
    if model is not None:
        if model not in results:
            raise NotFoundError(f"job {job_id} has no model type {model!r} "
                                f"(it has {', '.join(results)})")
        if results[model].state != DONE:
            raise NotFoundError(f"job {job_id}: model type {model!r} has not finished yet "
                                f"({results[model].fits_done}/{results[model].fits_total} fits)")
        if results[model].refit_error:
            raise NotFoundError(f"job {job_id}: model type {model!r} has no fitted model: "
                                f"{results[model].refit_error}")
        name = model
    else:
        best = best_type(results)
        if best is None:
            raise NotFoundError(f"job {job_id}: no model type has finished yet")
        name = best
    return name, read_checkpoint(store, f"model-{name}")["estimator"]


def export_model(state_dir: Path, job_id: str, model: str | None, fmt: str,
                 out: Path, history: int | None = None) -> tuple[str, int]:
    """Write the best model of ``job_id`` (or of its type ``model``; of its archived
    results ``history``) to ``out``; returns the model type and the bytes written."""
    name, est = best_model(state_dir, job_id, model, history)
    if fmt == "pickle":
        data = pickle.dumps(est, protocol=pickle.HIGHEST_PROTOCOL)
    elif fmt == "joblib":
        import io

        import joblib
        buf = io.BytesIO()
        joblib.dump(est, buf)
        data = buf.getvalue()
    elif fmt == "skops":
        try:
            import skops.io as sio
        except ImportError:
            raise SearchdError("export --format skops needs skops: "
                               "pip install 'searchd[skops]'") from None
        data = sio.dumps(est)
    else:
        raise SearchdError(f"unknown format {fmt!r} (expected {', '.join(FORMATS)})")
    write_output(Path(out), data)
    return name, len(data)


def write_output(out: Path, data: bytes) -> None:
    """Write ``data`` to ``out`` atomically, only ever as a regular file.

    What is there already decides: nothing, a new file (mode from the umask, as any
    tool makes one); a regular file, replaced atomically by one with the same mode
    (less set-id bits; owner and group too, where the user may set them); a file with more than one
    hard link, refused (replacing it would detach the other names, writing into it
    would not be atomic and would change the file behind them); anything else (a
    symbolic link, a device, a FIFO, a socket, a folder) is refused, never followed
    or replaced: ``-o /dev/null`` as root must not replace the system's.
    """
    try:
        st: os.stat_result | None = os.lstat(out)
    except FileNotFoundError:
        st = None
    except OSError as e:
        raise SearchdError(f"{out}: cannot write: {e.strerror or e}") from None
    if st is not None:
        if stat.S_ISLNK(st.st_mode):
            raise SearchdError(f"{out}: is a symbolic link; export writes only regular files "
                               "and never follows a link (name the target itself)")
        if not stat.S_ISREG(st.st_mode):
            raise SearchdError(f"{out}: is {_kind(st.st_mode)}, not a regular file; export "
                               "replaces only regular files")
        if st.st_nlink > 1:
            raise SearchdError(f"{out}: has {st.st_nlink} hard links; replacing it would "
                               "detach them and writing into it would not be atomic: "
                               "remove it first or choose another name")
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o666)
    except OSError as e:
        raise SearchdError(f"{out}: cannot write: {e.strerror or e}") from None
    try:
        with os.fdopen(fd, "wb") as f:
            if st is not None:
                if (st.st_uid, st.st_gid) != (os.geteuid(), os.getegid()):
                    # root (or a member of the file's group) keeps them; others cannot,
                    # and then the new file is theirs, which is all they could write anyway
                    with contextlib.suppress(PermissionError):
                        os.fchown(f.fileno(), st.st_uid, st.st_gid)
                # the mode as it was, less set-user/group-id: the new content is data
                os.fchmod(f.fileno(), stat.S_IMODE(st.st_mode) & ~(stat.S_ISUID | stat.S_ISGID))
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, out)
    except OSError as e:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise SearchdError(f"{out}: cannot write: {e.strerror or e}") from None
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    with contextlib.suppress(OSError):  # durability of the name; the data is already safe
        fsync_dir(out.parent)


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"
