"""The worker keeps ``state/<job>/report.html`` current (the supervisor never draws).

A report is drawn when a model type is done, at most every ``REPORT_SECONDS`` while a type
runs, and at the job's end, in a thread of its own so that no fit waits for matplotlib;
requests that arrive while one is drawn make one more, not one each. Drawing reads the
results through the read API after they are flushed, and a report that cannot be made never
stops the job (:func:`searchd.report.refresh_report` logs and returns False). With
``publish`` on, the results are published for the daemon's group after each report
(:mod:`searchd.worker.publishing`), at the same moments and in the same thread.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

from searchd.worker.publishing import Publisher

#: seconds between two reports while a model type runs
REPORT_SECONDS = 300.0


class ReportKeeper:
    def __init__(self, state_dir: Path, job_id: str, publish_to: Path | None = None,
                 draw: bool = True) -> None:
        self.state_dir, self.job_id = state_dir, job_id
        #: draw the page (the ``report`` setting); publishing goes on without it
        self.draw = draw
        #: with ``publish``: the results for the daemon's group, after each report
        self.publisher = None if publish_to is None else Publisher(state_dir, job_id, publish_to)
        self._wanted = threading.Event()
        self._idle = threading.Event()
        self._idle.set()
        self._last = time.monotonic()
        self.written = 0
        self._thread = threading.Thread(target=self._loop, name="report", daemon=True)
        self._thread.start()

    def request(self) -> None:
        """Draw the report soon (a model type is done)."""
        self._idle.clear()
        self._wanted.set()

    def tick(self, now: float) -> None:
        """From the control loop, after a flush: draw if the last report is old."""
        if now - self._last >= REPORT_SECONDS:
            self._last = now
            self.request()

    def finish(self, timeout: float = 60.0) -> None:
        """At the job's end: wait for the report in progress, then draw the final one."""
        self._idle.wait(timeout)
        self._draw()

    def _loop(self) -> None:
        while True:
            self._wanted.wait()
            self._wanted.clear()
            self._draw()
            if not self._wanted.is_set():
                self._idle.set()

    def _draw(self) -> None:
        self._last = time.monotonic()
        if self.draw:
            from searchd.report import refresh_report  # matplotlib: only once one is due
            if refresh_report(self.state_dir, self.job_id):
                self.written += 1
        if self.publisher is not None:
            self.publisher.publish()
