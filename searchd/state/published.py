"""The published results: per job, what the daemon's group may read (issue 21).

``<publish_root>/<job>/`` holds copies made for people, never the daemon's own files:

- ``summary.json``: the job's summary, as ``searchd status`` reads it
- ``results.json``: per model type its state, best candidate, hold-out score and errors
- ``<type>.cv_results.json`` / ``.csv``: the type's ``cv_results_`` (``show --json``'s layout)
- ``<type>.skops``: the type's best model, refitted (when skops is installed)
- ``report.html``: the job's report, once it exists

Never a pickle, the key or a checkpoint: :func:`publish_file` refuses any other name.
Folders are ``2750`` (setgid: what is made in them keeps the folder's group, the daemon's)
and files ``0640``, set with ``chmod`` so that the daemon's ``UMask=0077`` does not
close them; each file is replaced atomically. The private helpers of
:mod:`searchd.state.files` stay owner-only: nothing here loosens a checkpoint's folder.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import re
import stat
from pathlib import Path
from typing import Any

from searchd.errors import SettingsError
from searchd.jobs.ids import job_id_problem
from searchd.settings import Settings
from searchd.state.files import KEY_FILE, PUBLISHED, atomic_write

log = logging.getLogger(__name__)

DIR_MODE = 0o2750
FILE_MODE = 0o640
SUMMARY = "summary.json"
RESULTS = "results.json"
REPORT = "report.html"
#: the names a published folder may hold: nothing else is ever written there
_TYPE_FILE = re.compile(r"[A-Za-z][A-Za-z0-9_-]*\.(cv_results\.json|cv_results\.csv|skops)")
JOB_FILES = (SUMMARY, RESULTS, REPORT)
#: the daemon-wide status (searchd.state.daemon_status), published beside the job folders
ROOT_FILES = ("searchd.status.json",)


def allowed_name(name: str, root: bool = False) -> bool:
    """Whether ``name`` may be published (in a job's folder, or the root with ``root``)."""
    if root:
        return name in ROOT_FILES
    return name in JOB_FILES or _TYPE_FILE.fullmatch(name) is not None


def model_file(model: str) -> str:
    return f"{model}.skops"


def cv_files(model: str) -> tuple[str, str]:
    return f"{model}.cv_results.json", f"{model}.cv_results.csv"


# --- folders -----------------------------------------------------------------------------------

def shared_dir(path: Path) -> Path:
    """``path`` as a folder of the daemon's, mode 2750, never through a symbolic link.

    A link where the folder belongs is removed (not followed) and a folder made; a folder
    of another user is refused (``PermissionError``): the daemon never publishes into a
    folder someone else controls.
    """
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        st = os.lstat(path)
        if stat.S_ISLNK(st.st_mode):
            log.warning("%s: a symbolic link where searchd publishes; removing the link", path)
            os.unlink(path)
            os.mkdir(path, 0o700)
        elif not stat.S_ISDIR(st.st_mode):
            raise NotADirectoryError(errno.ENOTDIR, "not a folder", str(path)) from None
        elif st.st_uid != os.geteuid():
            raise PermissionError(errno.EPERM, f"belongs to uid {st.st_uid}, not to "
                                  f"searchd's user; not publishing there", str(path)) from None
    if stat.S_IMODE(os.lstat(path).st_mode) != DIR_MODE:
        os.chmod(path, DIR_MODE, follow_symlinks=False)
    return path


def root_folder(root: Path) -> Path:
    """The published root, made as a shared folder (its parents as needed)."""
    root.parent.mkdir(parents=True, exist_ok=True)
    return shared_dir(root)


def job_folder(root: Path, job_id: str) -> Path:
    """``<root>/<job_id>``, made as a shared folder (and ``root`` too)."""
    problem = job_id_problem(job_id)
    if problem:
        raise ValueError(problem)
    return shared_dir(root_folder(root) / job_id)


# --- files -------------------------------------------------------------------------------------

def publish_file(folder: Path, name: str, data: bytes, durable: bool = True,
                 root: bool = False) -> None:
    """Replace ``folder/name`` with ``data`` atomically, mode 0640; only allowed names."""
    if not allowed_name(name, root):
        raise ValueError(f"{name!r} is not something searchd publishes")
    atomic_write(folder / name, data, durable, mode=FILE_MODE)


def remove_stale(folder: Path, keep: set[str]) -> None:
    """Remove the per-type files of model types no longer in the job (its edit dropped them)."""
    for entry in os.scandir(folder):
        if _TYPE_FILE.fullmatch(entry.name) and entry.name not in keep:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(entry.path)


def to_json(value: Any) -> bytes:
    """JSON for people: NaN as null, numpy values as numbers, anything else as its text."""
    from searchd.state.records import finite

    return (json.dumps(finite(_plain(value)), indent=2, allow_nan=False, default=str)
            + "\n").encode()


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    tolist = getattr(value, "tolist", None)  # numpy arrays (masked ones too) and scalars
    if tolist is not None and type(value).__module__.startswith("numpy"):
        return _plain(tolist())
    return value


def publishes_inside(settings: Settings) -> bool:
    """Whether the results are published in ``state/published`` (then the state folder
    is 0710, see :func:`searchd.state.files.secure_state_dir`).

    Any other folder inside the state folder is refused (``SettingsError``): it would sit
    among the job folders, which are private.
    """
    if not settings.publish:
        return False
    root = Path(os.path.abspath(settings.publish_root()))
    state = Path(os.path.abspath(settings.state_dir))
    if root == state / PUBLISHED:
        return True
    if root == state or root.is_relative_to(state) or state.is_relative_to(root):
        raise SettingsError(f"publish_dir {settings.publish_dir}: inside (or above) the state "
                            f"folder {settings.state_dir}; use the default "
                            f"({state / PUBLISHED}) or a folder outside it")
    return False


class SummaryPublisher:
    """The supervisor's side: each ``summary.json`` it writes is published too (when
    ``publish`` is on); a failure is logged once per job until it works again."""

    def __init__(self, settings: Settings) -> None:
        self.root = settings.publish_root() if settings.publish else None
        self._failing: set[str] = set()

    def publish(self, job_id: str, text: bytes) -> None:
        if self.root is None:
            return
        try:
            publish_file(job_folder(self.root, job_id), SUMMARY, text, durable=False)
        except (OSError, ValueError) as e:
            if job_id not in self._failing:
                log.error("%s: cannot publish summary.json in %s: %s", job_id, self.root, e)
                self._failing.add(job_id)
            return
        self._failing.discard(job_id)


# --- who reads what ----------------------------------------------------------------------------

def private_unreadable(state_dir: Path) -> bool:
    """True when this user may not read the daemon's private state (its key, its job
    folders): a member of the daemon's group, who reads the published results instead."""
    try:
        with open(state_dir / KEY_FILE, "rb"):
            pass
    except PermissionError:
        return True
    except OSError:
        pass  # no key yet (no daemon ran), or no state folder at all: nothing to say
    try:
        with os.scandir(state_dir) as entries:
            for _ in entries:
                break
    except PermissionError:
        return True
    except OSError:
        pass
    return False


__all__ = ["DIR_MODE", "FILE_MODE", "REPORT", "RESULTS", "ROOT_FILES", "SUMMARY",
           "SummaryPublisher", "allowed_name", "cv_files", "job_folder", "model_file",
           "private_unreadable", "publish_file", "publishes_inside", "remove_stale",
           "root_folder", "shared_dir", "to_json"]
