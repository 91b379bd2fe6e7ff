"""A small sd_notify(3) client: readiness, status and watchdog pings to systemd.

systemd passes the address of its notification socket in ``$NOTIFY_SOCKET`` (a
path, or ``@name`` for an abstract socket) and, with ``WatchdogSec=``, the
watchdog period in ``$WATCHDOG_USEC``. Outside systemd (tests, a terminal) the
variable is unset and every method is a no-op, so callers never need to check.

The supervisor's main loop calls :meth:`Notifier.maybe_watchdog` on every tick:
the ping then proves that the loop itself is alive, which a background thread
could not. Sending never raises; the first failure is logged at WARNING.
"""

from __future__ import annotations

import logging
import os
import socket

log = logging.getLogger(__name__)

#: environment variables systemd sets for the notification protocol
_ENV_VARS = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")

#: a send must not stall the main loop if systemd's socket queue is full
_SEND_TIMEOUT = 1.0


def _socket_address(address: str) -> bytes | None:
    """Turn ``$NOTIFY_SOCKET``'s form into a socket address; None if unsupported."""
    if address.startswith("@"):
        # Abstract namespace: the name is the rest, after a NUL byte instead of '@'.
        return b"\0" + os.fsencode(address[1:])
    if address.startswith("\0") or address.startswith("/"):
        return os.fsencode(address)
    return None


def _parse_usec(value: str) -> int | None:
    """``$WATCHDOG_USEC`` as a positive integer; None when unset or malformed."""
    if not value:
        return None
    try:
        usec = int(value)
    except ValueError:
        usec = 0
    if usec <= 0:
        log.warning("ignoring WATCHDOG_USEC=%r: not a positive integer", value)
        return None
    return usec


class Notifier:
    """Send sd_notify messages to systemd, or do nothing when not run by it.

    ``address`` overrides ``$NOTIFY_SOCKET`` (tests). The environment is read
    once, here. With ``unset_environment`` the notification variables are then
    removed from ``os.environ``, so that child processes (workers) do not
    inherit them.
    """

    def __init__(self, address: str | None = None, *, unset_environment: bool = False) -> None:
        raw = address if address is not None else os.environ.get("NOTIFY_SOCKET", "")
        self._address: bytes | None = None
        if raw:
            self._address = _socket_address(raw)
            if self._address is None:
                log.warning("ignoring NOTIFY_SOCKET=%r: not a path or an abstract socket", raw)
        self._watchdog_usec = _parse_usec(os.environ.get("WATCHDOG_USEC", ""))
        self._watchdog_pid = os.environ.get("WATCHDOG_PID", "")
        if unset_environment:
            for name in _ENV_VARS:
                os.environ.pop(name, None)
        self._last_status: str | None = None
        self._last_ping: float | None = None
        self._warned = False

    @property
    def enabled(self) -> bool:
        """True when there is a notification socket to send to."""
        return self._address is not None

    def send(self, *fields: str) -> bool:
        """Send ``KEY=value`` fields in one datagram; True if systemd received it.

        A field may not contain a newline (it would forge further fields): that
        is the caller's bug and raises ValueError. Delivery errors never raise.
        """
        for field in fields:
            if "\n" in field or "=" not in field:
                raise ValueError(f"sd_notify field must be one KEY=value line, got {field!r}")
        if self._address is None or not fields:
            return False
        message = "\n".join(fields).encode()
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.settimeout(_SEND_TIMEOUT)
                sock.sendto(message, self._address)
        except OSError as e:
            if not self._warned:
                self._warned = True
                log.warning(
                    "cannot notify systemd at %r: %s (further failures are not logged)",
                    self._address,
                    e,
                )
            else:
                log.debug("cannot notify systemd at %r: %s", self._address, e)
            return False
        return True

    def ready(self) -> bool:
        """Tell systemd that start-up is complete (``Type=notify``)."""
        return self.send("READY=1")

    def stopping(self) -> bool:
        """Tell systemd that a (warm) stop has begun."""
        return self.send("STOPPING=1")

    def status(self, text: str) -> bool:
        """Show ``text`` in ``systemctl status``; whitespace runs become one space.

        An unchanged status is not sent again (the main loop may call this every
        tick); returns True only when a new status was delivered.
        """
        line = " ".join(text.split())
        if line == self._last_status:
            return False
        sent = self.send(f"STATUS={line}")
        if sent:
            self._last_status = line
        return sent

    def watchdog(self) -> bool:
        """Ping the watchdog now."""
        return self.send("WATCHDOG=1")

    def watchdog_interval(self) -> float | None:
        """Seconds between two pings (half of systemd's period), None without a watchdog.

        Like sd_watchdog_enabled(3), the watchdog belongs to ``$WATCHDOG_PID``
        when that is set: a forked child that inherited the variables gets None.
        """
        if not self.enabled or self._watchdog_usec is None:
            return None
        if self._watchdog_pid and self._watchdog_pid != str(os.getpid()):
            return None
        return self._watchdog_usec / 2_000_000

    def maybe_watchdog(self, now: float) -> bool:
        """Ping if a watchdog is set and ``watchdog_interval()`` has passed since the last ping.

        ``now`` is a monotonic time from the caller's loop. The first call
        pings. Returns True when it pinged (whether or not systemd received it:
        a failing socket is not retried faster than the interval).
        """
        interval = self.watchdog_interval()
        if interval is None:
            return False
        if self._last_ping is not None and now - self._last_ping < interval:
            return False
        self._last_ping = now
        self.watchdog()
        return True


__all__ = ["Notifier"]
