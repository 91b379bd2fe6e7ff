"""``searchd status --watch``: redraw a command's output in place until Ctrl-C."""

from __future__ import annotations

import argparse
import contextlib
import io
import sys
import time
from collections.abc import Callable
from typing import TextIO

#: cursor home, clear the screen: the whole of ``watch(1)``'s redraw, in ANSI codes
CLEAR = "\x1b[H\x1b[2J"


def positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}")
    return value


def watch(render: Callable[[], int], interval: float, title: str, count: int | None = None,
          out: TextIO | None = None, sleep: Callable[[float], None] = time.sleep) -> int:
    """Call ``render`` every ``interval`` seconds; on a terminal each output replaces the last.

    Each refresh is rendered in full before the screen is cleared, so a slow read of the state
    never leaves a blank screen. Not on a terminal (a pipe, a log), the refreshes follow each
    other, separated by their header. Ctrl-C ends it with status 0; ``count`` stops it after
    that many refreshes (tests).
    """
    out = out if out is not None else sys.stdout
    tty = out.isatty()
    done = 0
    try:
        while True:
            buffer = io.StringIO()
            with contextlib.redirect_stdout(buffer):
                status = render()
            header = f"Every {interval:g}s: {title}    {time.strftime('%Y-%m-%d %H:%M:%S')}\n\n"
            out.write((CLEAR if tty else ("\n" if done else "")) + header + buffer.getvalue())
            out.flush()
            done += 1
            if status != 0 or (count is not None and done >= count):
                return status
            sleep(interval)
    except KeyboardInterrupt:
        if tty:
            out.write("\n")
        return 0


__all__ = ["CLEAR", "positive_seconds", "watch"]
