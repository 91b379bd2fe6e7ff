"""A pool batch's outcomes as each is scored: a warm-start chain's or a run's links, one
JSON line each in a file of the worker's private pool folder, so that the worker records
(and checkpoints) every link as it arrives, not when the batch ends.

The pool process appends a line per outcome (one ``write`` of a whole line); the worker's
feeder reads the complete lines so far while the batch runs. Floats travel as
``float.hex``, so a score read back is the score computed, to the last bit. The file holds
data only (never pickles): a line that does not parse ends the reading, and the batch's
own result, which holds every outcome too, says the rest.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from searchd.worker.evaluate import Outcome

log = logging.getLogger(__name__)

#: the names of the files in the pool folder (``<prefix><uuid>.jsonl``)
PREFIX = "links-"
_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC


def encode(o: Outcome) -> bytes:
    scores = None if o.scores is None else {k: float(v).hex() for k, v in o.scores.items()}
    return (json.dumps({"i": o.i, "fold": o.fold, "scores": scores,
                        "fit": float(o.fit_time).hex(), "score": float(o.score_time).hex(),
                        "error": o.error}, separators=(",", ":")) + "\n").encode()


def decode(line: bytes) -> Outcome:
    """One line back as an Outcome; ValueError when it is not one."""
    d = json.loads(line)
    if not isinstance(d, dict):
        raise ValueError("not an object")
    i, fold, scores, error = d.get("i"), d.get("fold"), d.get("scores"), d.get("error")
    if not isinstance(i, int) or not isinstance(fold, int) or \
            not (error is None or isinstance(error, str)):
        raise ValueError("bad row, fold or error")
    if scores is not None:
        if not isinstance(scores, dict) or not all(isinstance(v, str) for v in scores.values()):
            raise ValueError("bad scores")
        scores = {str(k): float.fromhex(v) for k, v in scores.items()}
    fit, score = d.get("fit"), d.get("score")
    if not isinstance(fit, str) or not isinstance(score, str):
        raise ValueError("bad times")
    return Outcome(i, fold, scores, float.fromhex(fit), float.fromhex(score), error)


class Writer:
    """In a pool process: appends each outcome to ``path`` (created private). A file that
    cannot be written (the folder gone as the job ends, a full disk) only stops the
    streaming: the batch's result still holds every outcome."""

    def __init__(self, path: str) -> None:
        self.fd: int | None = None
        try:
            self.fd = os.open(path, _FLAGS, 0o600)
        except OSError:
            pass

    def put(self, o: Outcome) -> None:
        if self.fd is None:
            return
        try:
            os.write(self.fd, encode(o))
        except OSError:
            self.close()

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


class Reader:
    """In the worker: the outcomes a batch's file holds so far, each once."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._at = 0
        self._broken = False
        #: how many outcomes were read (the batch's result repeats them first), and whose
        self.count = 0
        self.seen: set[tuple[int, int]] = set()

    def read(self) -> list[Outcome]:
        if self._broken:
            return []
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:  # nothing written yet
            return []
        try:
            os.lseek(fd, self._at, os.SEEK_SET)
            chunks = []
            while chunk := os.read(fd, 1 << 16):
                chunks.append(chunk)
        finally:
            os.close(fd)
        data = b"".join(chunks)
        whole = data[:data.rfind(b"\n") + 1]  # a line still being written waits
        out: list[Outcome] = []
        for line in whole.splitlines():
            try:
                out.append(decode(line))
            except (ValueError, TypeError, OverflowError) as e:
                log.warning("%s: unreadable outcome line (%s); the batch's result will say "
                            "the rest", self.path, e)
                self._broken = True
                break
        self._at += len(whole)
        self.count += len(out)
        self.seen.update((o.i, o.fold) for o in out)
        return out

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


def remove_stale(folder: Path) -> None:
    """Remove the link files a killed worker left in ``folder``."""
    for path in folder.glob(f"{PREFIX}*.jsonl"):
        path.unlink(missing_ok=True)


def writer_for(path: str | None, batch: list[Any]) -> Writer | None:
    """A writer when the batch has a task of several links and a file to say them in."""
    if path is None or not any(t.links for t in batch):
        return None
    return Writer(path)


__all__ = ["PREFIX", "Reader", "Writer", "decode", "encode", "remove_stale", "writer_for"]
