"""Run a command in a fresh network namespace that has only loopback (``unshare``).

Inside, nothing can leave the machine even if the code under test is broken, so tests may aim
traffic at non-loopback addresses there — and only there.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from collections.abc import Sequence

import pytest

# Bring loopback up (a new namespace starts with it down), then run the command.
_LO_UP = 'ip link set lo up && exec "$@"'


@functools.cache
def netns_prefix() -> tuple[str, ...] | None:
    """The command prefix that enters a loopback-only network namespace, or None if forbidden."""
    unshare, ip = shutil.which("unshare"), shutil.which("ip")
    if unshare is None or ip is None:
        return None
    # As root a plain network namespace works; otherwise ask for a user namespace too (-r).
    flags = "-n" if os.geteuid() == 0 else "-rn"
    prefix = (unshare, flags, "sh", "-c", _LO_UP, "netns")
    try:
        probe = subprocess.run([*prefix, "true"], capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return prefix if probe.returncode == 0 else None


def require_netns() -> tuple[str, ...]:
    """The namespace prefix, or skip the test saying why."""
    prefix = netns_prefix()
    if prefix is None:
        pytest.skip(
            "this kernel or container forbids network namespaces (`unshare -n` / `unshare -rn` "
            "failed, or `unshare`/`ip` is missing), so the loopback-only run cannot be made here"
        )
    return prefix


def run_in_netns(command: Sequence[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    """Run ``command`` inside a loopback-only network namespace, capturing text output."""
    prefix = require_netns()
    return subprocess.run(  # type: ignore[call-overload, no-any-return]
        [*prefix, *command], capture_output=True, text=True, **kwargs
    )
