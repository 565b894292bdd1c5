"""The egress guard refuses and logs traffic to other machines, and lets loopback through.

Real traffic is only ever attempted in a subprocess inside a loopback-only network namespace
(``tests/desktop/netns.py``): even a broken guard could not send anything off the machine.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from bastion.desktop.egress import (
    LOG_NAME,
    RefusedConnection,
    is_local_host,
    read_refusal_log,
    refusal_target,
)
from tests.desktop.netns import run_in_netns


class FakeSocket:
    """Only what the guard looks at: the address family."""

    def __init__(self, family: int) -> None:
        self.family = family


INET, INET6, UNIX = FakeSocket(socket.AF_INET), FakeSocket(socket.AF_INET6), FakeSocket(socket.AF_UNIX)


@pytest.mark.parametrize(
    "host",
    ["127.0.0.1", "127.8.9.10", "::1", "::ffff:127.0.0.1", "localhost", "LOCALHOST.", "app.localhost",
     b"127.0.0.1", None, "::1%lo"],
)
def test_loopback_hosts_are_local(host: object) -> None:
    assert is_local_host(host)


@pytest.mark.parametrize(
    "host",
    ["192.0.2.1", "10.0.0.1", "::ffff:192.0.2.1", "2001:db8::1", "example.com", "localhost.example.com",
     "0.0.0.0", "", b"\xff", 1234],
)
def test_other_hosts_are_not_local(host: object) -> None:
    assert not is_local_host(host)


@pytest.mark.parametrize(
    ("event", "args", "target"),
    [
        ("socket.connect", (INET, ("192.0.2.1", 9)), "192.0.2.1:9"),
        ("socket.connect", (INET6, ("2001:db8::1", 443, 0, 0)), "[2001:db8::1]:443"),
        ("socket.connect", (INET, ("example.com", 80)), "example.com:80"),  # connect resolves names
        ("socket.sendto", (INET, ("192.0.2.1", 53)), "192.0.2.1:53"),
        ("socket.sendmsg", (INET, ("192.0.2.1", 53)), "192.0.2.1:53"),
        ("socket.bind", (INET, ("", 8080)), "0.0.0.0:8080"),
        ("socket.bind", (INET, ("0.0.0.0", 0)), "0.0.0.0:0"),
        ("socket.getaddrinfo", ("example.com", 443, 0, 0, 0), "example.com"),
        ("socket.getaddrinfo", (b"example.com", None, 0, 0, 0), "example.com"),
        ("socket.gethostbyname", ("example.com",), "example.com"),
        ("socket.gethostbyaddr", ("192.0.2.1",), "192.0.2.1"),
        ("socket.getnameinfo", (("192.0.2.1", 80), 0), "192.0.2.1:80"),
    ],
)
def test_egress_events_are_refused(event: str, args: tuple[object, ...], target: str) -> None:
    assert refusal_target(event, args) == target


@pytest.mark.parametrize(
    ("event", "args"),
    [
        ("socket.connect", (INET, ("127.0.0.1", 8080))),
        ("socket.connect", (INET6, ("::1", 8080, 0, 0))),
        ("socket.connect", (INET, ("localhost", 8080))),
        ("socket.connect", (UNIX, "/tmp/some.sock")),
        ("socket.connect", (UNIX, b"\0abstract")),
        ("socket.sendto", (INET, ("127.0.0.1", 9))),
        ("socket.sendmsg", (INET, None)),  # connected socket: its connect was checked
        ("socket.bind", (INET, ("127.0.0.1", 0))),
        ("socket.getaddrinfo", ("localhost", 80, 0, 0, 0)),
        ("socket.getaddrinfo", (None, 80, 0, 0, 0)),
        ("socket.getaddrinfo", ("", 0, 0, 0, 0)),
        ("socket.gethostbyname", ("localhost",)),
        ("socket.getnameinfo", (("127.0.0.1", 80), 0)),
        ("open", ("/etc/hosts", "r", 0)),
        ("socket.__new__", (INET, socket.AF_INET, socket.SOCK_STREAM, 0)),
    ],
)
def test_local_and_unrelated_events_pass(event: str, args: tuple[object, ...]) -> None:
    assert refusal_target(event, args) is None


def test_other_families_are_refused() -> None:
    packet = FakeSocket(getattr(socket, "AF_PACKET", 17))
    assert refusal_target("socket.sendto", (packet, ("eth0", 0x0800))) is not None


def test_refusal_log_skips_damaged_lines(tmp_path: Path) -> None:
    log = tmp_path / LOG_NAME
    good = {"time": "2025-01-01T00:00:00Z", "pid": 1, "event": "socket.connect",
            "target": "192.0.2.1:9", "caller": "x.py:1"}
    log.write_text(json.dumps(good) + "\nnot json\n{\"time\": 1}\n", encoding="utf-8")
    assert read_refusal_log(log) == [RefusedConnection(**good)]  # type: ignore[arg-type]
    assert read_refusal_log(tmp_path / "missing.log") == []


# Runs in a loopback-only namespace; prints one JSON object of outcomes.
PROBE = textwrap.dedent(
    """
    import json, multiprocessing, socket, sys, threading
    from pathlib import Path

    from bastion.desktop import egress

    if sys.argv[1] == "guarded":
        egress.install_egress_guard(Path(sys.argv[2]))
        egress.install_egress_guard(Path(sys.argv[2]))  # idempotent: still one hook
    out = {}

    def attempt(name, action):
        try:
            action()
            out[name] = "allowed"
        except PermissionError as error:
            out[name] = "refused: " + str(error)
        except OSError as error:
            out[name] = "oserror: " + repr(error)

    def tcp_out():
        with socket.socket() as s:
            s.settimeout(2)
            s.connect(("192.0.2.1", 9))

    def udp_out():
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.sendto(b"x", ("192.0.2.1", 9))

    attempt("connect", tcp_out)
    attempt("sendto", udp_out)
    attempt("getaddrinfo", lambda: socket.getaddrinfo("example.com", 80))
    attempt("gethostbyname", lambda: socket.gethostbyname("example.com"))
    attempt("create_connection", lambda: socket.create_connection(("example.com", 80), timeout=2))

    # Loopback must work: a real echo over 127.0.0.1, via the name "localhost" too.
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    def echo():
        for _ in range(2):
            conn, _ = server.accept()
            with conn:
                conn.sendall(conn.recv(16))
    threading.Thread(target=echo, daemon=True).start()
    def loop(host):
        with socket.create_connection((host, port), timeout=5) as c:
            c.sendall(b"ping")
            assert c.recv(16) == b"ping"
    attempt("loopback_ip", lambda: loop("127.0.0.1"))
    attempt("loopback_name", lambda: loop("localhost"))

    # multiprocessing's Unix-socket pipes must work too.
    def pipe():
        a, b = multiprocessing.Pipe()
        a.send({"x": 1})
        assert b.recv() == {"x": 1}
    attempt("unix_pipe", pipe)

    out["refused"] = [r.target for r in egress.refused_connections()]
    print(json.dumps(out))
    """
)


def run_probe(mode: str, log: Path) -> dict[str, object]:
    result = run_in_netns([sys.executable, "-c", PROBE, mode, str(log)], timeout=120)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def test_guard_refuses_and_logs_egress_but_not_loopback(tmp_path: Path) -> None:
    log = tmp_path / "logs" / LOG_NAME
    out = run_probe("guarded", log)
    for name in ("connect", "sendto", "getaddrinfo", "gethostbyname", "create_connection"):
        assert str(out[name]).startswith("refused: Bastion's egress guard refused"), (name, out[name])
    assert "192.0.2.1:9" in str(out["connect"])
    assert "example.com" in str(out["getaddrinfo"])
    for name in ("loopback_ip", "loopback_name", "unix_pipe"):
        assert out[name] == "allowed", (name, out[name])
    assert out["refused"] == ["192.0.2.1:9", "192.0.2.1:9", "example.com", "example.com", "example.com"]
    logged = read_refusal_log(log)
    assert [(r.event, r.target) for r in logged] == [
        ("socket.connect", "192.0.2.1:9"),
        ("socket.sendto", "192.0.2.1:9"),
        ("socket.getaddrinfo", "example.com"),
        ("socket.gethostbyname", "example.com"),
        ("socket.getaddrinfo", "example.com"),
    ]
    assert all(r.caller.startswith("<string>:") for r in logged[:4])  # names the code that tried
    assert (log.stat().st_mode & 0o777) == 0o600


def test_probe_tells_a_missing_guard_apart(tmp_path: Path) -> None:
    """Control: without the guard the same probe is not refused, so the test above is meaningful."""
    out = run_probe("unguarded", tmp_path / LOG_NAME)
    assert str(out["connect"]).startswith("oserror: ")  # the namespace has no route out
    assert out["refused"] == []
    assert not (tmp_path / LOG_NAME).exists()


def test_cli_entry_installs_the_guard(bastion_home: Path) -> None:
    """Every command runs guarded; ``--help`` and refused arguments stop before any command
    runs (and before anything heavy is imported), so they need no guard."""
    script = textwrap.dedent(
        """
        import sys
        from bastion.desktop import egress
        from bastion.desktop.cli import main
        main(["settings", "get", "n_ctx"])
        print("guarded" if egress.guard_installed() else "unguarded")
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=120, check=True)
    assert result.stdout.strip().splitlines()[-1] == "guarded"
