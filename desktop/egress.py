"""The egress guard: a Python audit hook that refuses any network traffic leaving the machine.

Once installed, a non-loopback ``socket.connect`` / ``sendto`` / ``sendmsg`` / ``bind`` and any
name lookup (``getaddrinfo``, ``gethostbyname`` and friends) of something other than the local
host raises ``PermissionError`` in the code that tried, is kept in a process-wide list
(``refused_connections()``) and is appended to a log file in the data folder. Loopback
(127.0.0.0/8, ::1, ``localhost``) and Unix sockets (multiprocessing's pipes) stay allowed.

One exception can be configured: the on-prem inference server of the remote engine
(``allow_remote_endpoint``). Then exactly that host and port may be connected to (and its name,
if it is a name, looked up); any other host, or another port on that host, is still refused.

Limits, stated plainly: an audit hook sees what Python code does in *this* process. A C library
that opens a socket itself, or a spawned child process (the engine, parse workers), is not
covered by it; the OS-level proof (``tests/packaging/test_no_network.py``: a run in a network
namespace with only loopback, and an ``strace -f`` of a connected run) covers those.
"""

from __future__ import annotations

import ipaddress
import json
import os
import socket
import sys
import threading
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bastion.desktop.paths import data_paths

LOG_NAME = "egress.log"

# Audit events that reach (or name) another machine. ``gethostbyname_ex`` raises the
# ``socket.gethostbyname`` event; ``connect_ex`` raises ``socket.connect``.
_ADDRESS_EVENTS = frozenset({"socket.connect", "socket.sendto", "socket.sendmsg", "socket.bind"})
_LOOKUP_EVENTS = frozenset(
    {"socket.getaddrinfo", "socket.gethostbyname", "socket.gethostbyaddr", "socket.getnameinfo"}
)
WATCHED_EVENTS = _ADDRESS_EVENTS | _LOOKUP_EVENTS

# Names that always mean this machine (RFC 6761 reserves *.localhost for loopback).
_LOCAL_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"})
_INET_FAMILIES = frozenset({socket.AF_INET, socket.AF_INET6})
_UNIX_FAMILY = getattr(socket, "AF_UNIX", None)


@dataclass(frozen=True)
class RefusedConnection:
    """One network operation the guard refused.

    Attributes:
        time: UTC time of the attempt, ISO 8601.
        pid: Process that tried.
        event: The audit event, e.g. ``socket.connect`` or ``socket.getaddrinfo``.
        target: What it tried to reach, e.g. ``192.0.2.1:9`` or ``example.com``.
        caller: ``file:line`` of the first frame outside the socket module, to find the culprit.
    """

    time: str
    pid: int
    event: str
    target: str
    caller: str


class _GuardState:
    def __init__(self) -> None:
        self.installed = False
        self.log_path: Path | None = None
        self.refused: list[RefusedConnection] = []
        self.lock = threading.Lock()
        # The remote engine's server: its port, its name as configured, and the addresses it had.
        self.remote_port: int | None = None
        self.remote_name: str | None = None
        self.remote_addresses: frozenset[str] = frozenset()


_state = _GuardState()


def is_local_host(host: object) -> bool:
    """Whether a host (name, address string or bytes) certainly means this machine.

    Args:
        host: A host as given to a socket function: ``str``, ``bytes``, ``None`` or other.

    Returns:
        True for loopback addresses (127.0.0.0/8, ::1, IPv4-mapped loopback), ``localhost`` and
        ``*.localhost``, and ``None`` (the passive/loopback lookup); False for anything else,
        including every other name, since resolving it could ask a DNS server.
    """
    if host is None:
        return True
    if isinstance(host, bytes):
        try:
            host = host.decode("ascii")
        except UnicodeDecodeError:
            return False
    if not isinstance(host, str):
        return False
    name = host.strip().rstrip(".").lower()
    if name in _LOCAL_NAMES or name.endswith(".localhost"):
        return True
    name = name.split("%", 1)[0]  # IPv6 zone index, e.g. ::1%lo
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


def _host_text(host: object) -> str:
    return host.decode(errors="replace") if isinstance(host, bytes) else str(host)


def _describe_address(address: object) -> str:
    if isinstance(address, tuple) and len(address) >= 2:
        host_text, port = _host_text(address[0]), address[1]
        if ":" in host_text:
            host_text = f"[{host_text}]"
        return f"{host_text}:{port}"
    return repr(address)


def _normal_address(host: object) -> str | None:
    """``host`` as a canonical IP address string, or None if it is not an address."""
    text = _host_text(host).strip().split("%", 1)[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(address)


def _port_of(port: object) -> int | None:
    if isinstance(port, bytes):
        port = port.decode("ascii", "replace")
    if isinstance(port, int) and not isinstance(port, bool):
        return port
    if isinstance(port, str) and port.strip().isdigit():
        return int(port)
    return None


def _is_remote_endpoint(host: object, port: object) -> bool:
    """Whether ``host``:``port`` is the configured remote server (its address or its name)."""
    if _state.remote_port is None or _port_of(port) != _state.remote_port:
        return False
    address = _normal_address(host)
    if address is not None:
        return address in _state.remote_addresses
    return _host_text(host).strip().rstrip(".").lower() == _state.remote_name


def allow_remote_endpoint(host: str | None, port: int | None = None) -> None:
    """Let this process reach exactly ``host``:``port``, the remote engine's server (None: none).

    A name is looked up here, once, and its addresses allowed with it; later lookups of that
    same name (and port) pass, connections to the addresses it had pass, and nothing else does.
    Calling again replaces the endpoint: one configured server at a time.

    Args:
        host: The server's name or IP address, as configured in ``remote_url``; None forgets it.
        port: Its TCP port.

    Raises:
        OSError: the name cannot be resolved (``socket.gaierror``).
    """
    if host is None or port is None:
        with _state.lock:
            _state.remote_port, _state.remote_name, _state.remote_addresses = None, None, frozenset()
        return
    name = host.strip().rstrip(".").lower()
    address = _normal_address(name)
    with _state.lock:  # allow the name first: resolving it raises the lookup's audit event
        _state.remote_port, _state.remote_name = port, name
        _state.remote_addresses = frozenset({address} if address else ())
    if address is None:
        found = {_normal_address(info[4][0]) for info in socket.getaddrinfo(name, port)}
        with _state.lock:
            _state.remote_addresses = frozenset(a for a in found if a)


def allowed_remote_endpoint() -> tuple[str, int] | None:
    """The remote server this process may reach, as (host, port), or None."""
    with _state.lock:
        if _state.remote_port is None or _state.remote_name is None:
            return None
        return _state.remote_name, _state.remote_port


def refusal_target(event: str, args: tuple[Any, ...]) -> str | None:
    """Decide one audit event: what it tries to reach if it must be refused, else None.

    Args:
        event: The audit event name.
        args: The audit event's arguments (see the ``socket`` module's audit events).

    Returns:
        A description of the refused target (``host:port`` or a host name), or None if the event
        is not network egress (not watched, loopback, or a Unix socket).
    """
    if event not in WATCHED_EVENTS:
        return None
    if event in _ADDRESS_EVENTS:
        sock, address = (args[0], args[1]) if len(args) >= 2 else (None, None)
        if address is None:  # sendmsg on an already connected socket: its connect was checked
            return None
        family = getattr(sock, "family", None)
        if _UNIX_FAMILY is not None and family == _UNIX_FAMILY:
            return None
        if family in _INET_FAMILIES and isinstance(address, tuple) and address:
            if event == "socket.bind" and address[0] in ("", b""):
                return _describe_address(("0.0.0.0", *address[1:]))  # every interface
            if is_local_host(address[0]):
                return None
            if (event == "socket.connect" and len(address) >= 2
                    and _is_remote_endpoint(address[0], address[1])):
                return None
            return _describe_address(address)
        # Any other family (packet, CAN, Bluetooth, ...) can leave the machine.
        return f"family {family}: {address!r}"
    if event in ("socket.getaddrinfo", "socket.gethostbyname", "socket.gethostbyaddr"):
        host = args[0] if args else None
        if event == "socket.getaddrinfo" and host in ("", b""):
            host = None  # an empty host is the wildcard/passive lookup, never DNS
        if is_local_host(host):
            return None
        if (event == "socket.getaddrinfo" and len(args) >= 2
                and _is_remote_endpoint(host, args[1])):
            return None
        return _host_text(host)
    # socket.getnameinfo: (sockaddr, flags) — a reverse lookup of that address
    sockaddr = args[0] if args else None
    if isinstance(sockaddr, tuple) and sockaddr and is_local_host(sockaddr[0]):
        return None
    return _describe_address(sockaddr)


def _caller() -> str:
    frame = sys._getframe(2)
    here = __file__
    while frame is not None:
        filename = frame.f_code.co_filename
        if filename != here and not filename.endswith(("socket.py", "ssl.py")):
            return f"{filename}:{frame.f_lineno}"
        frame = frame.f_back  # type: ignore[assignment]
    return "unknown"


def _record(refusal: RefusedConnection) -> None:
    with _state.lock:
        _state.refused.append(refusal)
        log_path = _state.log_path
        if log_path is None:
            return
        try:
            log_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            with os.fdopen(fd, "a", encoding="utf-8") as log:
                log.write(json.dumps(asdict(refusal)) + "\n")
        except OSError:
            pass  # the refusal itself must still happen; the in-memory list keeps the record


def _audit_hook(event: str, args: tuple[Any, ...]) -> None:
    if event not in WATCHED_EVENTS:  # every audited event passes here: keep this path short
        return
    target = refusal_target(event, args)
    if target is None:
        return
    refusal = RefusedConnection(
        time=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        pid=os.getpid(),
        event=event,
        target=target,
        caller=_caller(),
    )
    _record(refusal)
    raise PermissionError(
        f"Bastion's egress guard refused {event} to {target}: Bastion works offline and opens "
        "no connection to another machine. If you see this, report the line from "
        f"{_state.log_path or 'the refusals list'} (it names the code that tried)."
    )


def install_egress_guard(log_path: Path | None = None) -> None:
    """Install the egress guard in this process (idempotent).

    Audit hooks cannot be removed, so the hook is added once; a later call only changes where
    refusals are logged (each test, for instance, has its own data folder).

    Args:
        log_path: File to append refusals to (one JSON object per line, created 0600), or None
            to keep them only in memory.
    """
    with _state.lock:
        _state.log_path = log_path
        if _state.installed:
            return
        _state.installed = True
    sys.addaudithook(_audit_hook)


def guard_installed() -> bool:
    """Whether this process runs with the egress guard."""
    return _state.installed


def refused_connections() -> list[RefusedConnection]:
    """Refusals made in this process since start-up, oldest first."""
    with _state.lock:
        return list(_state.refused)


def read_refusal_log(log_path: Path) -> list[RefusedConnection]:
    """Refusals recorded in a log file by any Bastion process (unreadable lines are skipped).

    Args:
        log_path: The egress log, usually ``DataPaths.logs_dir / LOG_NAME``.

    Returns:
        The recorded refusals, oldest first; empty if the file does not exist.
    """
    try:
        lines: Iterable[str] = log_path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return []
    refusals = []
    for line in lines:
        try:
            refusals.append(RefusedConnection(**json.loads(line)))
        except (ValueError, TypeError):
            continue
    return refusals


def guard_this_process() -> None:
    """Application start-up: guard the process, logging refusals in the data folder."""
    install_egress_guard(data_paths().logs_dir / LOG_NAME)
