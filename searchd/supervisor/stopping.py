"""The warm stop, stepped: the worker was asked to flush and exit; wait for it, kill it when
it takes too long or a second signal comes, and give up on one that survives SIGKILL."""

from __future__ import annotations

import logging

from searchd.supervisor.proctree import ProcessControl
from searchd.supervisor.seams import Worker

log = logging.getLogger("searchd")

WARM_STOP_SECONDS = 8.0
KILL_WAIT_SECONDS = 5.0  # after SIGKILL, how long to wait for the worker's exit status


class WarmStop:
    """Begun at monotonic ``now`` with ``signals`` stop signals counted (one more: cold)."""

    def __init__(self, now: float, signals: int) -> None:
        #: when to give up waiting: for the flush, then (once killed) for the exit status
        self.deadline = now + WARM_STOP_SECONDS
        self.signals = signals
        self.killed = False

    def settled(self, now: float, w: Worker | None, signals: int,
                control: ProcessControl) -> bool:
        """True once the daemon may finish: no worker, it exited, or it cannot be ended."""
        if w is None or w.poll() is not None:
            return True
        if not self.killed:
            if signals > self.signals:
                log.warning("second signal: cold stop")
            elif now < self.deadline:
                return False
            else:
                log.warning("%s: worker did not stop in time; killing it", w.job_id)
            control.kill(w.pid)
            self.killed, self.deadline = True, now + KILL_WAIT_SECONDS
            return w.poll() is not None
        if now < self.deadline:
            return False
        log.error("%s: worker %d survived SIGKILL for %.0fs; leaving it", w.job_id, w.pid,
                  KILL_WAIT_SECONDS)
        return True


__all__ = ["KILL_WAIT_SECONDS", "WARM_STOP_SECONDS", "WarmStop"]
