"""The worker's side of the event pipe to the supervisor (:mod:`searchd.protocol`)."""

from __future__ import annotations

import logging
import os
import threading

from searchd import protocol
from searchd.protocol import Exit

log = logging.getLogger("searchd.worker")


class Events:
    """Event lines to the supervisor; a broken pipe means it is gone, so we stop."""

    def __init__(self, fd: int | None) -> None:
        self.fd = fd
        self.lock = threading.Lock()

    def send(self, event: protocol.Event) -> None:
        if self.fd is None:
            return
        line = protocol.encode(event)
        with self.lock:
            try:
                os.write(self.fd, line)
            except BrokenPipeError:
                log.error("supervisor is gone; exiting")
                os._exit(Exit.STOPPED)
