"""What the window needs from the system, checked before Qt loads.

Qt aborts the whole process when its X11 platform plugin cannot load ("Could not load the Qt
platform plugin "xcb""), and a minimal Debian lacks some of the libraries that plugin links to
(libxcb-cursor0, libxcb-icccm4, libxcb-keysyms1). So before a ``QApplication`` exists, we ask the
dynamic loader (``ldd``) which of the plugin's libraries are not found, name the packages that
hold them, and build the one command that installs them on this distribution. Nothing here
imports Qt: the point is to run before it.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

Family = Literal["debian", "fedora"]

# Qt platforms that draw without a window server: no display and no X11 libraries needed.
HEADLESS_PLATFORMS = {"offscreen", "minimal", "vnc", "eglfs", "linuxfb"}

# The system libraries that Qt's X11 plugin and the Qt libraries the window imports link to
# directly (read from their ELF headers: libqxcb.so, libQt6XcbQpa, Gui, Core, DBus, Widgets,
# Network), by soname, with the Debian/Ubuntu and the Fedora package that holds each. What those
# libraries need in turn comes with these packages' dependencies.
PACKAGES: dict[str, tuple[str, str]] = {
    "libxcb-cursor.so.0": ("libxcb-cursor0", "xcb-util-cursor"),
    "libxcb-icccm.so.4": ("libxcb-icccm4", "xcb-util-wm"),
    "libxcb-keysyms.so.1": ("libxcb-keysyms1", "xcb-util-keysyms"),
    "libxcb-image.so.0": ("libxcb-image0", "xcb-util-image"),
    "libxcb-render-util.so.0": ("libxcb-render-util0", "xcb-util-renderutil"),
    "libxcb-util.so.1": ("libxcb-util1", "xcb-util"),
    "libxcb.so.1": ("libxcb1", "libxcb"),
    "libxcb-randr.so.0": ("libxcb-randr0", "libxcb"),
    "libxcb-render.so.0": ("libxcb-render0", "libxcb"),
    "libxcb-shape.so.0": ("libxcb-shape0", "libxcb"),
    "libxcb-shm.so.0": ("libxcb-shm0", "libxcb"),
    "libxcb-sync.so.1": ("libxcb-sync1", "libxcb"),
    "libxcb-xfixes.so.0": ("libxcb-xfixes0", "libxcb"),
    "libxcb-xkb.so.1": ("libxcb-xkb1", "libxcb"),
    "libxkbcommon.so.0": ("libxkbcommon0", "libxkbcommon"),
    "libxkbcommon-x11.so.0": ("libxkbcommon-x11-0", "libxkbcommon-x11"),
    "libX11.so.6": ("libx11-6", "libX11"),
    "libX11-xcb.so.1": ("libx11-xcb1", "libX11-xcb"),
    "libEGL.so.1": ("libegl1", "libglvnd-egl"),
    "libGL.so.1": ("libgl1", "libglvnd-glx"),
    "libfontconfig.so.1": ("libfontconfig1", "fontconfig"),
    "libfreetype.so.6": ("libfreetype6", "freetype"),
    "libdbus-1.so.3": ("libdbus-1-3", "dbus-libs"),
    "libglib-2.0.so.0": ("libglib2.0-0", "glib2"),
    "libgthread-2.0.so.0": ("libglib2.0-0", "glib2"),
    "libgssapi_krb5.so.2": ("libgssapi-krb5-2", "krb5-libs"),
    "libbrotlidec.so.1": ("libbrotli1", "libbrotli"),
    "libbrotlicommon.so.1": ("libbrotli1", "libbrotli"),
    "libzstd.so.1": ("libzstd1", "libzstd"),
}

# The Qt libraries, besides the X11 plugin, that the window imports (QtWidgets, QtNetwork).
QT_LIBRARIES = ("libQt6Widgets.so.6", "libQt6Network.so.6")

INSTALLERS: dict[Family, str] = {"debian": "apt-get install -y", "fedora": "dnf install -y"}
FAMILY_NAMES: dict[Family, str] = {"debian": "Debian/Ubuntu", "fedora": "Fedora"}


def qpa_platform(environ: Mapping[str, str]) -> str:
    """Qt's first-choice platform plugin from ``QT_QPA_PLATFORM`` ("" when Qt decides).

    The variable may list fallbacks (``wayland;xcb``) and options (``xcb:option=1``).
    """
    first = environ.get("QT_QPA_PLATFORM", "").split(";")[0]
    return first.split(":")[0].strip().lower()


def display_available(environ: Mapping[str, str] | None = None,
                      platform: str | None = None) -> bool:
    """Whether Qt can show a window here, decided before Qt is imported (Qt aborts otherwise)."""
    env = os.environ if environ is None else environ
    platform = sys.platform if platform is None else platform
    if qpa_platform(env) in HEADLESS_PLATFORMS:
        return True
    if platform.startswith("linux") or "bsd" in platform:
        return bool(env.get("DISPLAY") or env.get("WAYLAND_DISPLAY"))
    return True  # Windows and macOS always have a window server for a logged-in user


def uses_xcb(environ: Mapping[str, str] | None = None, platform: str | None = None) -> bool:
    """Whether Qt will open the window through its X11 (xcb) plugin on this system."""
    env = os.environ if environ is None else environ
    platform = sys.platform if platform is None else platform
    if not platform.startswith("linux"):
        return False
    qpa = qpa_platform(env)
    # Without a choice, a Wayland session gets Qt's Wayland plugin, which needs no xcb.
    return qpa == "xcb" or (qpa == "" and not env.get("WAYLAND_DISPLAY"))


def qt_libraries() -> list[Path]:
    """PySide6's X11 plugin and the Qt libraries the window imports, found without importing
    PySide6 (empty when PySide6 or its X11 plugin is not installed)."""
    spec = importlib.util.find_spec("PySide6")
    for location in (spec.submodule_search_locations or []) if spec else []:
        qt = Path(location) / "Qt"
        plugin = qt / "plugins" / "platforms" / "libqxcb.so"
        if plugin.is_file():
            return [plugin, *(qt / "lib" / name for name in QT_LIBRARIES
                              if (qt / "lib" / name).is_file())]
    return []


def run_ldd(paths: Sequence[Path]) -> str:
    """The dynamic loader's view of ``paths``: every library they need and where it is found.

    Raises:
        OSError: ``ldd`` is not installed or cannot run.
        subprocess.SubprocessError: ``ldd`` failed or took too long.
    """
    ldd = shutil.which("ldd")
    if ldd is None:
        raise FileNotFoundError("ldd is not installed")
    # C locale: "not found" is what we look for, whatever the user's language.
    run = subprocess.run([ldd, *map(str, paths)], capture_output=True, text=True, timeout=30,
                         env={**os.environ, "LC_ALL": "C"}, check=True)
    return run.stdout


def missing_from_ldd(output: str) -> list[str]:
    """The sonames ``ldd`` reports as ``not found``, each once, in its order."""
    missing: list[str] = []
    for line in output.splitlines():
        name, arrow, where = line.strip().partition("=>")
        if arrow and where.strip() == "not found" and name.strip() not in missing:
            missing.append(name.strip())
    return missing


def parse_os_release(text: str) -> dict[str, str]:
    """``/etc/os-release`` as a dictionary (quotes removed)."""
    fields = {}
    for line in text.splitlines():
        key, equals, value = line.strip().partition("=")
        if equals and not key.startswith("#"):
            fields[key] = value.strip().strip("'\"")
    return fields


def read_os_release() -> str:
    """This system's os-release text ("" when there is none)."""
    for path in (Path("/etc/os-release"), Path("/usr/lib/os-release")):
        try:
            return path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
    return ""


def distro_family(os_release: Mapping[str, str]) -> Family | None:
    """``debian`` for Debian, Ubuntu and their derivatives; ``fedora`` for Fedora and RHEL's."""
    ids = [os_release.get("ID", ""), *os_release.get("ID_LIKE", "").split()]
    for distro in (i.lower() for i in ids):
        if distro in ("debian", "ubuntu"):
            return "debian"
        if distro in ("fedora", "rhel", "centos"):
            return "fedora"
    return None


def window_packages(family: Family) -> list[str]:
    """Every package the window's Qt libraries link to, on ``family`` (what the README lists)."""
    index = 0 if family == "debian" else 1
    return list(dict.fromkeys(packages[index] for packages in PACKAGES.values()))


def install_command(packages: Sequence[str], family: Family, as_root: bool = False) -> str:
    """The one command that installs ``packages`` on ``family``."""
    return f"{'' if as_root else 'sudo '}{INSTALLERS[family]} {' '.join(packages)}"


@dataclass(frozen=True)
class LibraryCheck:
    """What Qt's X11 plugin and the window's Qt libraries lack on this system.

    Attributes:
        checked: The Qt libraries that were checked (empty when PySide6 is not installed).
        missing: Sonames the dynamic loader could not find, each once.
        family: The distribution family, for naming packages (None when unknown).
        as_root: Whether this process is root (the command then needs no ``sudo``).
        error: Why the check could not run ("" when it ran).
    """

    checked: tuple[Path, ...]
    missing: tuple[str, ...] = ()
    family: Family | None = None
    as_root: bool = False
    error: str = ""

    @property
    def ok(self) -> bool:
        """True when the check ran and nothing is missing."""
        return bool(self.checked) and not self.error and not self.missing

    def needed(self) -> list[str]:
        """The missing sonames to name: those Qt links to directly when any is missing (what
        they need in turn comes with their packages), otherwise all of them."""
        direct = [s for s in self.missing if s in PACKAGES]
        return direct or list(self.missing)

    def packages(self, family: Family) -> list[str]:
        """The packages holding the needed libraries on ``family``, each once."""
        index = 0 if family == "debian" else 1
        return list(dict.fromkeys(PACKAGES[s][index] for s in self.needed() if s in PACKAGES))

    def command(self, family: Family | None = None) -> str:
        """The one command that installs the missing packages ("" when none is known)."""
        family = family or self.family
        if family is None or not self.packages(family):
            return ""
        return install_command(self.packages(family), family, self.as_root)

    def how_to_install(self) -> str:
        """The command for this system, or for each family we know when the system is unknown
        ("" when no package is known for the missing libraries)."""
        if self.family is not None and self.command():
            return self.command()
        return "; ".join(f"on {FAMILY_NAMES[f]}: {self.command(f)}" for f in INSTALLERS
                         if self.command(f))

    def message(self) -> str:
        """What the window lacks and the command that installs it, for a person to act on."""
        text = (f"the window cannot open: Qt needs system libraries that are not installed "
                f"({', '.join(self.needed())}).")
        if not self.how_to_install():
            return f"{text}\nInstall the packages that provide them with your package manager."
        return f"{text}\nInstall them with:\n  {self.how_to_install()}"


def check_libraries(qt: Sequence[Path] | None = None,
                    ldd: Callable[[Sequence[Path]], str] | None = None,
                    os_release: str | None = None,
                    euid: int | None = None) -> LibraryCheck:
    """Which system libraries Qt would fail to load for the window, and how to install them.

    Args:
        qt: The Qt libraries to check; PySide6's X11 plugin and ``QT_LIBRARIES`` by default.
        ldd: Returns the ``ldd`` output for some paths; ``run_ldd`` by default.
        os_release: The text of ``/etc/os-release``; this system's by default.
        euid: The effective user id; this process's by default.

    Returns:
        A ``LibraryCheck``: ``ok``, or what is missing and the command that installs it, or
        why the check could not run.
    """
    checked = tuple(qt_libraries() if qt is None else qt)
    if not checked:
        return LibraryCheck((), error="PySide6 (with its X11 plugin libqxcb.so) is not installed")
    release = read_os_release() if os_release is None else os_release
    family = distro_family(parse_os_release(release))
    if euid is None:
        euid = os.geteuid() if hasattr(os, "geteuid") else -1
    try:
        output = (ldd or run_ldd)(checked)
    except (OSError, subprocess.SubprocessError) as error:
        return LibraryCheck(checked, family=family, as_root=euid == 0,
                            error=f"could not run ldd on {checked[0]}: {error}")
    return LibraryCheck(checked, tuple(missing_from_ldd(output)), family, euid == 0)
