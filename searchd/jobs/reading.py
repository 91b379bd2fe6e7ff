"""A job file's bytes → a document (TOML or JSON by suffix), within size and depth limits.

Only regular files are read, at most MAX_JOB_BYTES of them, and nesting past MAX_DEPTH is
refused before anything recurses into it; every error names the file.
"""

from __future__ import annotations

import errno
import json
import os
import stat
import sys
import tomllib
from pathlib import Path
from typing import Any

from searchd.errors import JobSpecError
from searchd.jobs.ids import SUFFIXES
from searchd.jobs.messages import SHOW_CHARS, clip

#: the largest job file accepted: far above any real job (a 100,000-value grid written out
#: is ~1 MB), small enough that parsing a hostile file costs well under a second
MAX_JOB_BYTES = 1 << 20
#: the deepest nesting of tables and lists accepted (a real job needs about 10); deeper
#: documents are refused before anything recurses into them
MAX_DEPTH = 32


def read_job_bytes(path: Path, follow_symlinks: bool = True) -> tuple[bytes, os.stat_result]:
    """A job file's bytes (at most :data:`MAX_JOB_BYTES`) and its stat; errors name the file.

    Only a regular file is read: a FIFO would block, a device never end. Opening
    with ``O_NONBLOCK`` and checking the open file (not the name) leaves no window
    for the name to be swapped for something else in between.
    """
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | (0 if follow_symlinks
                                                          else os.O_NOFOLLOW)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise JobSpecError(f"{path}: job file not found") from None
    except OSError as e:  # ELOOP: a symlink under O_NOFOLLOW; EACCES, ...
        if e.errno == errno.ELOOP and not follow_symlinks:
            raise JobSpecError(f"{path}: {SYMLINK_REASON}") from None
        raise JobSpecError(f"{path}: cannot read: {e.strerror}") from None
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise JobSpecError(f"{path}: cannot read: Is a directory")
        if not stat.S_ISREG(st.st_mode):
            raise JobSpecError(f"{path}: not a regular file (a FIFO, device or socket)")
        if st.st_size > MAX_JOB_BYTES:
            raise JobSpecError(too_big(path, st.st_size))
        chunks: list[bytes] = []
        left = MAX_JOB_BYTES + 1  # the file may have grown since the fstat
        while left > 0 and (chunk := os.read(fd, left)):
            chunks.append(chunk)
            left -= len(chunk)
        raw = b"".join(chunks)
    except OSError as e:
        raise JobSpecError(f"{path}: cannot read: {e.strerror}") from None
    finally:
        os.close(fd)
    if len(raw) > MAX_JOB_BYTES:
        raise JobSpecError(too_big(path, len(raw)))
    return raw, st


SYMLINK_REASON = ("is a symbolic link; searchd reads only regular files in its jobs folder "
                  "(copy the file there, e.g. with `searchd submit`)")


def too_big(path: Path, size: int) -> str:
    return (f"{path}: {size:,} bytes is more than a job file may have "
            f"({MAX_JOB_BYTES:,} bytes)")


def read_job_file(path: Path) -> dict[str, Any]:
    """Parse a job file's bytes as TOML or JSON (by suffix); errors name the file."""
    raw, _ = read_job_bytes(path)
    return parse_bytes(raw, path)


def parse_bytes(raw: bytes, path: Path) -> dict[str, Any]:
    if len(raw) > MAX_JOB_BYTES:
        raise JobSpecError(too_big(path, len(raw)))
    try:
        # utf-8-sig: a byte-order mark some editors write is no reason to refuse a file
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise JobSpecError(f"{path}: not UTF-8 text") from None
    if path.suffix not in SUFFIXES:
        raise JobSpecError(f"{path}: unknown job file type (expected .toml or .json)")
    kind = "TOML" if path.suffix == ".toml" else "JSON"
    try:
        data = tomllib.loads(text) if kind == "TOML" else json.loads(text)
    except RecursionError:  # both parsers recurse per nesting level
        raise JobSpecError(f"{path}: not valid {kind}: nested deeper than {MAX_DEPTH} "
                           "levels") from None
    except ValueError as e:  # the decode errors, and ints past Python's 4,300 digits
        why = str(e)
        if "integer string conversion" in why:
            why = f"an integer has more than {sys.get_int_max_str_digits():,} digits"
        raise JobSpecError(f"{path}: not valid {kind}: {clip(why, 4 * SHOW_CHARS)}") from None
    if not isinstance(data, dict):
        raise JobSpecError(f"{path}: expected a JSON object at the top level")
    _check_depth(data, path)
    return data


def _check_depth(doc: dict[str, Any], path: Path) -> None:
    """Refuse nesting past MAX_DEPTH, without recursion, before anything recurses into it."""
    stack: list[tuple[Any, str, int]] = [(doc, "", 0)]
    while stack:
        node, key, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise JobSpecError(f"{path}: {clip(key, 2 * SHOW_CHARS)}: nested deeper than "
                               f"{MAX_DEPTH} levels")
        if isinstance(node, dict):
            stack.extend((v, f"{key}.{k}" if key else str(k), depth + 1)
                         for k, v in node.items())
        elif isinstance(node, list):
            stack.extend((v, f"{key}[{i}]", depth + 1) for i, v in enumerate(node))
