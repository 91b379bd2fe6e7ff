"""sd_notify client: messages reach a real datagram socket, path or abstract."""

from __future__ import annotations

import logging
import os
import secrets
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from searchd.supervisor.notify import Notifier


class Receiver:
    """A bound datagram socket standing in for systemd's notification socket."""

    def __init__(self, sock: socket.socket, address: str) -> None:
        self.sock = sock
        #: the address as $NOTIFY_SOCKET would spell it
        self.address = address

    def messages(self) -> list[str]:
        """Every datagram received so far, without waiting for more."""
        out = []
        while True:
            try:
                out.append(self.sock.recv(65536).decode())
            except BlockingIOError:
                return out


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    # The test run itself may sit under systemd (CI in a unit): never notify it.
    for name in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def path_receiver(tmp_path: Path) -> Iterator[Receiver]:
    path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        sock.setblocking(False)
        yield Receiver(sock, str(path))


@pytest.fixture
def abstract_receiver() -> Iterator[Receiver]:
    name = f"searchd-test-{secrets.token_hex(8)}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.setblocking(False)
        yield Receiver(sock, "@" + name)


@pytest.fixture(params=["path", "abstract"])
def receiver(request: pytest.FixtureRequest) -> Receiver:
    return request.getfixturevalue(f"{request.param}_receiver")


def test_messages_arrive(receiver: Receiver) -> None:
    n = Notifier(receiver.address)
    assert n.enabled
    assert n.ready()
    assert n.status("loading jobs")
    assert n.watchdog()
    assert n.stopping()
    assert receiver.messages() == ["READY=1", "STATUS=loading jobs", "WATCHDOG=1", "STOPPING=1"]


def test_reads_notify_socket_from_environment(
    receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", receiver.address)
    n = Notifier()
    assert n.enabled
    n.ready()
    assert receiver.messages() == ["READY=1"]


def test_abstract_address_with_nul_byte(abstract_receiver: Receiver) -> None:
    n = Notifier("\0" + abstract_receiver.address[1:])
    n.ready()
    assert abstract_receiver.messages() == ["READY=1"]


def test_send_joins_fields_in_one_datagram(path_receiver: Receiver) -> None:
    n = Notifier(path_receiver.address)
    assert n.send("READY=1", "STATUS=up", "MAINPID=1")
    assert path_receiver.messages() == ["READY=1\nSTATUS=up\nMAINPID=1"]


def test_send_refuses_a_field_that_would_forge_another(path_receiver: Receiver) -> None:
    n = Notifier(path_receiver.address)
    with pytest.raises(ValueError, match="one KEY=value line"):
        n.send("STATUS=ok\nREADY=1")
    with pytest.raises(ValueError):
        n.send("READY")
    assert path_receiver.messages() == []


def test_status_is_one_line_and_deduplicated(path_receiver: Receiver) -> None:
    n = Notifier(path_receiver.address)
    assert n.status("job a: 10/20 fits\nload 5%\r\n")
    assert not n.status("job a: 10/20 fits load 5%")  # same line once collapsed
    assert not n.status("job a: 10/20 fits  load 5%")
    assert n.status("job a: 11/20 fits")
    assert n.status("job a: 10/20 fits load 5%")  # only the last status counts
    assert path_receiver.messages() == [
        "STATUS=job a: 10/20 fits load 5%",
        "STATUS=job a: 11/20 fits",
        "STATUS=job a: 10/20 fits load 5%",
    ]


def test_watchdog_interval(path_receiver: Receiver, monkeypatch: pytest.MonkeyPatch) -> None:
    assert Notifier(path_receiver.address).watchdog_interval() is None
    monkeypatch.setenv("WATCHDOG_USEC", "60000000")
    assert Notifier(path_receiver.address).watchdog_interval() == 30.0
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    assert Notifier(path_receiver.address).watchdog_interval() == 30.0
    # The watchdog belongs to another process (we are a child that inherited it).
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid() + 1))
    assert Notifier(path_receiver.address).watchdog_interval() is None


def test_watchdog_interval_needs_a_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "60000000")
    assert Notifier().watchdog_interval() is None


@pytest.mark.parametrize("value", ["0", "-5", "soon"])
def test_malformed_watchdog_usec_is_ignored(
    value: str,
    path_receiver: Receiver,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", value)
    with caplog.at_level(logging.WARNING, logger="searchd.supervisor.notify"):
        n = Notifier(path_receiver.address)
    assert n.watchdog_interval() is None
    assert not n.maybe_watchdog(0.0)
    assert "WATCHDOG_USEC" in caplog.text


def test_maybe_watchdog_rate(path_receiver: Receiver, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "10000000")  # WatchdogSec=10 -> ping every 5 s
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    n = Notifier(path_receiver.address)
    clock = 1000.0
    pinged = []
    # One tick per second, as the supervisor's main loop does, for 12 seconds.
    for _ in range(13):
        if n.maybe_watchdog(clock):
            pinged.append(clock)
        clock += 1.0
    assert pinged == [1000.0, 1005.0, 1010.0]
    assert path_receiver.messages() == ["WATCHDOG=1"] * 3
    # A late tick pings at once, and the next interval counts from it.
    assert n.maybe_watchdog(1017.5)
    assert not n.maybe_watchdog(1022.4)
    assert n.maybe_watchdog(1022.5)


def test_maybe_watchdog_without_watchdog(path_receiver: Receiver) -> None:
    n = Notifier(path_receiver.address)
    assert not any(n.maybe_watchdog(float(t)) for t in range(100))
    assert path_receiver.messages() == []


def test_no_op_without_notify_socket() -> None:
    n = Notifier()
    assert not n.enabled
    assert not n.ready()
    assert not n.status("anything")
    assert not n.watchdog()
    assert not n.stopping()
    assert not n.send("READY=1")
    assert n.watchdog_interval() is None
    assert not n.maybe_watchdog(0.0)


def test_unsupported_address_disables(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="searchd.supervisor.notify"):
        n = Notifier("vsock:2:1234")
    assert not n.enabled
    assert not n.ready()
    assert "NOTIFY_SOCKET" in caplog.text


def test_unreachable_socket_does_not_raise_and_warns_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    missing = Notifier(str(tmp_path / "no-such.sock"))  # ENOENT
    # A socket file nobody listens on any more: ECONNREFUSED.
    stale_path = tmp_path / "stale.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(stale_path))
    stale = Notifier(str(stale_path))
    abstract = Notifier(f"@searchd-test-absent-{secrets.token_hex(8)}")
    for n in (missing, stale, abstract):
        with caplog.at_level(logging.DEBUG, logger="searchd.supervisor.notify"):
            caplog.clear()
            assert n.enabled
            assert not n.ready()
            assert not n.status("x")
            assert not n.watchdog()
            assert not n.stopping()
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1, caplog.text
        assert "cannot notify systemd" in warnings[0].getMessage()


def test_failed_status_is_retried(tmp_path: Path) -> None:
    path = tmp_path / "late.sock"
    n = Notifier(str(path))
    assert not n.status("starting")  # systemd's socket is not there yet
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        sock.setblocking(False)
        assert n.status("starting")  # not swallowed by the deduplication
        assert sock.recv(100) == b"STATUS=starting"


def test_unset_environment(receiver: Receiver, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", receiver.address)
    monkeypatch.setenv("WATCHDOG_USEC", "4000000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    n = Notifier(unset_environment=True)
    for name in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"):
        assert name not in os.environ
    # The notifier itself keeps working: children just do not inherit it.
    assert n.watchdog_interval() == 2.0
    assert n.maybe_watchdog(0.0)
    assert receiver.messages() == ["WATCHDOG=1"]
