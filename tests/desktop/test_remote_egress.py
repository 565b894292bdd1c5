"""The egress guard lets through exactly the remote engine's server (host and port), nothing else.

Real traffic to a non-loopback address is only attempted in a loopback-only network namespace
(``tests/desktop/netns.py``), as in ``test_egress.py``.
"""

from __future__ import annotations

import json
import socket
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from bastion.desktop import egress
from bastion.desktop.egress import allow_remote_endpoint, allowed_remote_endpoint, refusal_target
from tests.desktop.netns import run_in_netns


class FakeSocket:
    def __init__(self, family: int) -> None:
        self.family = family


INET, INET6 = FakeSocket(socket.AF_INET), FakeSocket(socket.AF_INET6)


@pytest.fixture(autouse=True)
def no_endpoint() -> Iterator[None]:
    allow_remote_endpoint(None)
    yield
    allow_remote_endpoint(None)


def test_only_the_configured_address_and_port_pass() -> None:
    assert refusal_target("socket.connect", (INET, ("10.1.2.3", 8080))) == "10.1.2.3:8080"
    allow_remote_endpoint("10.1.2.3", 8080)
    assert allowed_remote_endpoint() == ("10.1.2.3", 8080)
    assert refusal_target("socket.connect", (INET, ("10.1.2.3", 8080))) is None
    assert refusal_target("socket.connect", (INET6, ("::ffff:10.1.2.3", 8080, 0, 0))) is None
    assert refusal_target("socket.getaddrinfo", ("10.1.2.3", 8080, 0, 1, 0)) is None
    # Another host, another port on the same host, or another kind of traffic: refused.
    assert refusal_target("socket.connect", (INET, ("10.1.2.4", 8080))) == "10.1.2.4:8080"
    assert refusal_target("socket.connect", (INET, ("10.1.2.3", 22))) == "10.1.2.3:22"
    assert refusal_target("socket.sendto", (INET, ("10.1.2.3", 8080))) == "10.1.2.3:8080"
    assert refusal_target("socket.bind", (INET, ("10.1.2.3", 8080))) == "10.1.2.3:8080"
    assert refusal_target("socket.getaddrinfo", ("example.com", 8080, 0, 0, 0)) == "example.com"
    allow_remote_endpoint(None)  # forgotten: refused again
    assert refusal_target("socket.connect", (INET, ("10.1.2.3", 8080))) == "10.1.2.3:8080"


def test_a_named_server_is_looked_up_once_and_its_addresses_pass(
        monkeypatch: pytest.MonkeyPatch) -> None:
    looked_up: list[tuple[object, object]] = []

    def fake_getaddrinfo(host: object, port: object, *args: object) -> list[tuple[object, ...]]:
        looked_up.append((host, port))
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.9.8.7", port)),
                (socket.AF_INET6, socket.SOCK_STREAM, 6, "", ("fd00::7", port, 0, 0))]

    monkeypatch.setattr(egress.socket, "getaddrinfo", fake_getaddrinfo)
    allow_remote_endpoint("GPU-Box.lan.", 8080)
    assert looked_up == [("gpu-box.lan", 8080)]
    assert refusal_target("socket.getaddrinfo", ("gpu-box.lan", 8080, 0, 1, 0)) is None
    assert refusal_target("socket.getaddrinfo", ("gpu-box.lan", "8080", 0, 1, 0)) is None
    assert refusal_target("socket.connect", (INET, ("10.9.8.7", 8080))) is None
    assert refusal_target("socket.connect", (INET6, ("fd00::7", 8080, 0, 0))) is None
    assert refusal_target("socket.getaddrinfo", ("gpu-box.lan", 80, 0, 1, 0)) == "gpu-box.lan"
    assert refusal_target("socket.getaddrinfo", ("gpu-box.lan.evil.com", 8080, 0, 1, 0)) is not None
    assert refusal_target("socket.gethostbyname", ("gpu-box.lan",)) == "gpu-box.lan"
    assert refusal_target("socket.connect", (INET, ("10.9.8.6", 8080))) == "10.9.8.6:8080"


PROBE = textwrap.dedent(
    """
    import json, socket, sys
    from pathlib import Path

    from bastion.desktop import egress

    egress.install_egress_guard(Path(sys.argv[1]))
    egress.allow_remote_endpoint("10.1.2.3", 8080)
    out = {}
    for host, port in (("10.1.2.3", 8080), ("10.1.2.4", 8080), ("10.1.2.3", 8081)):
        try:
            socket.create_connection((host, port), timeout=2).close()
            out[f"{host}:{port}"] = "connected"
        except PermissionError as error:
            out[f"{host}:{port}"] = "refused: " + str(error)
        except OSError as error:
            out[f"{host}:{port}"] = "oserror: " + type(error).__name__
    out["refused"] = [r.target for r in egress.refused_connections()]
    print(json.dumps(out))
    """
)


def test_in_a_loopback_only_namespace_only_the_configured_server_is_tried(tmp_path: Path) -> None:
    result = run_in_netns([sys.executable, "-c", PROBE, str(tmp_path / "egress.log")], timeout=120)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout.strip().splitlines()[-1])
    # The configured server passed the guard and met the namespace's missing network...
    assert str(out["10.1.2.3:8080"]).startswith("oserror"), out
    # ...while another host, and another port of that host, never left the process.
    assert str(out["10.1.2.4:8080"]).startswith("refused: Bastion's egress guard refused"), out
    assert str(out["10.1.2.3:8081"]).startswith("refused: Bastion's egress guard refused"), out
    # (refused at the lookup create_connection makes first, which names only the host)
    assert out["refused"] == ["10.1.2.4", "10.1.2.3"]
