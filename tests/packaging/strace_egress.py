"""Read an ``strace`` log for connection attempts that would leave the machine."""

from __future__ import annotations

import ipaddress
import re

# connect/sendto/sendmsg lines name the peer as {sa_family=AF_INET, ..., sin_addr=inet_addr("…")}
# or {sa_family=AF_INET6, ..., inet_pton(AF_INET6, "…", &sin6_addr) / sin6_addr=…}.
_INET = re.compile(r'sa_family=AF_INET\b[^}]*?inet_addr\("([^"]+)"\)')
_INET6 = re.compile(r'sa_family=AF_INET6\b[^}]*?inet_pton\(AF_INET6,\s*"([^"]+)"')
_SYSCALL = re.compile(r"\b(connect|sendto|sendmsg)\(")


def _is_loopback(text: str) -> bool:
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


def egress_attempts(trace: str) -> list[str]:
    """The trace lines whose connect/sendto/sendmsg names a non-loopback IPv4/IPv6 address.

    A line naming an INET family whose address cannot be read is reported too: unknown is not
    loopback.
    """
    found = []
    for line in trace.splitlines():
        if not _SYSCALL.search(line) or "AF_INET" not in line:
            continue
        addresses = _INET.findall(line) + _INET6.findall(line)
        if not addresses or not all(_is_loopback(a) for a in addresses):
            found.append(line.strip())
    return found
