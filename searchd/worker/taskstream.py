"""The tasks of one ``LocalRunner.stream`` call, taken by several threads (the worker's own
fitting thread and the pool's feeder), and the queue their outcomes go to.

Counts are of fits: a warm-start chain is one task of several fits.
"""

from __future__ import annotations

import queue
import threading
from collections import deque
from collections.abc import Iterable
from typing import Any

from searchd.worker.evaluate import Task
from searchd.worker.plan import Scoring

#: put on a stream's outcome queue when it has nothing more to say
END = object()


class TaskStream:
    """One ``LocalRunner.stream`` call: its tasks, taken by several threads, and the queue
    their outcomes go to."""

    def __init__(self, template: Any, scoring: Scoring, tasks: Iterable[Task],
                 count: int | None) -> None:
        self.template, self.scoring = template, scoring
        self._it = iter(tasks)
        #: tasks handed back (a pool process died with them in flight): taken first
        self._back: deque[Task] = deque()
        self._lock = threading.Lock()
        self.left = count
        self.exhausted = False
        self.out: queue.SimpleQueue[Any] = queue.SimpleQueue()
        #: threads putting outcomes (each ends with END); only grows before the last END
        self.producers = 0
        self.fed = False  # the pool's feeder is started (it may still wait for the pool)
        #: fits run in the worker before that (a chain's links each count), and the seconds
        #: of those after the first; ``left`` counts fits too
        self.done, self.later = 0, 0.0

    def take(self, n: int = 1) -> list[Task]:
        """Tasks worth ``n`` fits (a chain counts its links; at least one task, unless
        none is left)."""
        with self._lock:
            got: list[Task] = []
            weight = 0
            while self._back and weight < n:
                got.append(self._back.popleft())
                weight += got[-1].weight
            if not got and not self.exhausted:
                while weight < n:
                    t = next(self._it, None)
                    if t is None:
                        self.exhausted = True
                        break
                    got.append(t)
                    weight += t.weight
            if self.left is not None:
                self.left = max(0, self.left - weight)
            return got

    def close(self) -> None:
        with self._lock:
            self.exhausted = True
            self._back.clear()

    def push_back(self, tasks: list[Task]) -> None:
        """Tasks to run again (their pool process died), before any other."""
        with self._lock:
            self._back.extend(tasks)
            if self.left is not None:
                self.left += sum(t.weight for t in tasks)
