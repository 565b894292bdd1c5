"""The window's system libraries: found missing before Qt starts, named with the one command that
installs them, and the terminal commands offered meanwhile (never Qt's abort)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

from bastion.desktop import doctor, system_libs
from bastion.desktop.cli import gui_cmd
from bastion.desktop.system_libs import (
    LibraryCheck,
    check_libraries,
    distro_family,
    install_command,
    missing_from_ldd,
    parse_os_release,
    uses_xcb,
    window_packages,
)

README = Path(__file__).resolve().parents[2] / "README.md"
PLUGIN = Path("/venv/PySide6/Qt/plugins/platforms/libqxcb.so")
NETWORK = Path("/venv/PySide6/Qt/lib/libQt6Network.so.6")

# What ldd printed for PySide6 6.11's X11 plugin and QtNetwork on a Debian 12 without
# libxcb-icccm4 and libxcb-keysyms1 (shortened; a library missing twice is listed twice).
LDD_MISSING = f"""\
{PLUGIN}:
\tlinux-vdso.so.1 (0x00007fc10ab61000)
\tlibQt6XcbQpa.so.6 => /venv/PySide6/Qt/plugins/platforms/../../lib/libQt6XcbQpa.so.6 (0x1)
\tlibGL.so.1 => /lib/x86_64-linux-gnu/libGL.so.1 (0x00007fc10aa03000)
\tlibxcb-cursor.so.0 => /lib/x86_64-linux-gnu/libxcb-cursor.so.0 (0x00007fc10a9a9000)
\tlibxcb-icccm.so.4 => not found
\tlibxcb-util.so.1 => /lib/x86_64-linux-gnu/libxcb-util.so.1 (0x00007fc10a9a1000)
\tlibxcb-keysyms.so.1 => not found
\tlibxcb-icccm.so.4 => not found
\tlibxcb-keysyms.so.1 => not found
\t/lib64/ld-linux-x86-64.so.2 (0x00007fc10ab63000)
{NETWORK}:
\tlibgssapi_krb5.so.2 => /lib/x86_64-linux-gnu/libgssapi_krb5.so.2 (0x00007f0000000000)
"""
LDD_COMPLETE = LDD_MISSING.replace("not found", "/lib/x86_64-linux-gnu/libfound.so (0x1)")

DEBIAN = 'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nNAME="Debian GNU/Linux"\nID=debian\n'
UBUNTU = 'NAME="Ubuntu"\nVERSION_ID="24.04"\nID=ubuntu\nID_LIKE=debian\n'
MINT = 'NAME="Linux Mint"\nID=linuxmint\nID_LIKE="ubuntu debian"\n'
FEDORA = 'NAME="Fedora Linux"\nVERSION_ID=41\nID=fedora\n'
ROCKY = 'NAME="Rocky Linux"\nID="rocky"\nID_LIKE="rhel centos fedora"\n'
ARCH = 'NAME="Arch Linux"\nID=arch\n'


class FakeLdd:
    """Stands in for ``run_ldd``: answers with fixed text and records what it was asked."""

    def __init__(self, output: str = LDD_MISSING, error: Exception | None = None) -> None:
        self.output = output
        self.error = error
        self.asked: list[list[Path]] = []

    def __call__(self, paths: Sequence[Path]) -> str:
        self.asked.append(list(paths))
        if self.error is not None:
            raise self.error
        return self.output


def fake_check(os_release: str = DEBIAN, output: str = LDD_MISSING, euid: int = 1000) -> LibraryCheck:
    return check_libraries([PLUGIN, NETWORK], FakeLdd(output), os_release, euid)


# -- finding what is missing -----------------------------------------------------------------


def test_ldd_output_gives_each_missing_library_once() -> None:
    assert missing_from_ldd(LDD_MISSING) == ["libxcb-icccm.so.4", "libxcb-keysyms.so.1"]
    assert missing_from_ldd(LDD_COMPLETE) == []


def test_ldd_is_asked_about_the_plugin_and_the_window_libraries() -> None:
    ldd = FakeLdd()
    result = check_libraries([PLUGIN, NETWORK], ldd, DEBIAN, 1000)
    assert ldd.asked == [[PLUGIN, NETWORK]]
    assert result.missing == ("libxcb-icccm.so.4", "libxcb-keysyms.so.1")
    assert not result.ok and not result.error


def test_nothing_missing_is_ok() -> None:
    result = fake_check(output=LDD_COMPLETE)
    assert result.ok and result.missing == () and result.command() == ""


def test_ldd_that_cannot_run_is_reported_not_guessed() -> None:
    result = check_libraries([PLUGIN], FakeLdd(error=FileNotFoundError("ldd is not installed")),
                             DEBIAN, 1000)
    assert not result.ok and result.missing == ()
    assert "could not run ldd" in result.error and "ldd is not installed" in result.error


def test_without_pyside6_there_is_nothing_to_check() -> None:
    result = check_libraries([], FakeLdd(), DEBIAN, 1000)
    assert not result.ok and "PySide6" in result.error


# -- naming the packages and the one command -------------------------------------------------


def test_debian_message_names_the_packages_and_the_exact_command() -> None:
    message = fake_check(DEBIAN).message()
    assert "libxcb-icccm.so.4, libxcb-keysyms.so.1" in message
    assert message.endswith("Install them with:\n  "
                            "sudo apt-get install -y libxcb-icccm4 libxcb-keysyms1")
    assert "Could not load the Qt platform plugin" not in message


def test_fedora_command_uses_dnf_and_fedora_names() -> None:
    assert fake_check(FEDORA).how_to_install() == "sudo dnf install -y xcb-util-wm xcb-util-keysyms"
    assert fake_check(ROCKY).how_to_install() == "sudo dnf install -y xcb-util-wm xcb-util-keysyms"


def test_root_needs_no_sudo() -> None:
    assert fake_check(DEBIAN, euid=0).command() == "apt-get install -y libxcb-icccm4 libxcb-keysyms1"


def test_missing_cursor_library_names_libxcb_cursor0() -> None:
    found = "libxcb-cursor.so.0 => /lib/x86_64-linux-gnu/libxcb-cursor.so.0 (0x00007fc10a9a9000)"
    output = LDD_COMPLETE.replace(found, "libxcb-cursor.so.0 => not found")
    assert fake_check(DEBIAN, output).command() == "sudo apt-get install -y libxcb-cursor0"
    assert fake_check(FEDORA, output).command() == "sudo dnf install -y xcb-util-cursor"


def test_distribution_families_from_os_release() -> None:
    assert distro_family(parse_os_release(DEBIAN)) == "debian"
    assert distro_family(parse_os_release(UBUNTU)) == "debian"
    assert distro_family(parse_os_release(MINT)) == "debian"
    assert distro_family(parse_os_release(FEDORA)) == "fedora"
    assert distro_family(parse_os_release(ROCKY)) == "fedora"
    assert distro_family(parse_os_release(ARCH)) is None
    assert distro_family(parse_os_release("")) is None


def test_unknown_distribution_gets_both_commands() -> None:
    assert fake_check(ARCH).how_to_install() == (
        "on Debian/Ubuntu: sudo apt-get install -y libxcb-icccm4 libxcb-keysyms1; "
        "on Fedora: sudo dnf install -y xcb-util-wm xcb-util-keysyms")


def test_libraries_needed_only_by_missing_packages_are_left_to_their_dependencies() -> None:
    # A system without fontconfig lacks freetype and libpng too; installing libfontconfig1
    # brings them, so the command names what Qt links to and nothing more.
    output = LDD_COMPLETE + ("\tlibfontconfig.so.1 => not found\n\tlibfreetype.so.6 => not found\n"
                             "\tlibpng16.so.16 => not found\n")
    result = fake_check(DEBIAN, output)
    assert result.needed() == ["libfontconfig.so.1", "libfreetype.so.6"]
    assert result.command() == "sudo apt-get install -y libfontconfig1 libfreetype6"


def test_a_library_we_cannot_place_is_still_named() -> None:
    result = fake_check(DEBIAN, LDD_COMPLETE + "\tlibodd.so.3 => not found\n")
    assert result.command() == "" and result.how_to_install() == ""
    assert result.message().endswith("(libodd.so.3).\nInstall the packages that provide them "
                                     "with your package manager.")
    hint = doctor.check_window_libraries(result, {"DISPLAY": ":0"}, "linux").hint
    assert hint == "install the packages that provide them"


def test_readme_lists_every_package_for_debian_and_fedora() -> None:
    readme = README.read_text(encoding="utf-8")
    for family in ("debian", "fedora"):
        assert install_command(window_packages(family), family) in readme, family
    for package in ("libxcb-cursor0", "libxcb-icccm4", "libxcb-keysyms1"):
        assert package in window_packages("debian")


# -- when the check applies --------------------------------------------------------------------


def test_only_an_x11_qt_on_linux_needs_the_xcb_libraries() -> None:
    assert uses_xcb({"DISPLAY": ":0"}, "linux")
    assert uses_xcb({"DISPLAY": ":0", "QT_QPA_PLATFORM": "xcb"}, "linux")
    assert uses_xcb({"WAYLAND_DISPLAY": "wayland-0", "QT_QPA_PLATFORM": "xcb:dpi=96"}, "linux")
    assert not uses_xcb({"DISPLAY": ":0", "WAYLAND_DISPLAY": "wayland-0"}, "linux")
    assert not uses_xcb({"DISPLAY": ":0", "QT_QPA_PLATFORM": "offscreen"}, "linux")
    assert not uses_xcb({"QT_QPA_PLATFORM": "wayland;xcb"}, "linux")
    assert not uses_xcb({"DISPLAY": ":0"}, "darwin") and not uses_xcb({}, "win32")


# -- the gui command: our message and the terminal commands, never Qt's abort -----------------


@pytest.fixture
def x11_without_icccm(monkeypatch: pytest.MonkeyPatch) -> FakeLdd:
    """A Linux with an X display whose Qt plugin lacks libxcb-icccm4 and libxcb-keysyms1."""
    monkeypatch.setenv("DISPLAY", ":0")
    monkeypatch.delenv("QT_QPA_PLATFORM", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.setattr("sys.platform", "linux")
    ldd = FakeLdd()
    monkeypatch.setattr(system_libs, "run_ldd", ldd)
    monkeypatch.setattr(system_libs, "qt_libraries", lambda: [PLUGIN, NETWORK])
    monkeypatch.setattr(system_libs, "read_os_release", lambda: DEBIAN)
    return ldd


def test_missing_libraries_give_our_message_and_the_terminal_commands(
        x11_without_icccm: FakeLdd, capsys: pytest.CaptureFixture[str]) -> None:
    assert gui_cmd.run_gui(argparse.Namespace(no_model=True)) == 1
    err = capsys.readouterr().err
    assert "libxcb-icccm.so.4" in err
    assert "apt-get install -y libxcb-icccm4 libxcb-keysyms1" in err
    assert "bastion chat" in err and 'bastion ask "your question"' in err
    assert x11_without_icccm.asked == [[PLUGIN, NETWORK]]


def test_without_a_display_bastion_says_how_to_use_the_terminal(
        x11_without_icccm: FakeLdd, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("DISPLAY")
    assert gui_cmd.run_gui(argparse.Namespace(no_model=True)) == 1
    err = capsys.readouterr().err
    assert "no display" in err
    assert "bastion chat" in err and 'bastion ask "your question"' in err
    assert "bastion library add" in err and "bastion --help" in err
    assert x11_without_icccm.asked == []  # no display: the libraries do not matter yet


def test_offscreen_qt_skips_the_check(x11_without_icccm: FakeLdd,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QT_QPA_PLATFORM", "offscreen")
    assert gui_cmd.cannot_open_message() is None
    assert x11_without_icccm.asked == []


def test_a_check_that_cannot_run_leaves_the_window_to_qt(x11_without_icccm: FakeLdd) -> None:
    x11_without_icccm.error = FileNotFoundError("ldd is not installed")
    assert gui_cmd.cannot_open_message() is None


# -- bastion doctor ----------------------------------------------------------------------------


def test_doctor_fails_where_the_window_would_open_and_prints_the_command() -> None:
    result = doctor.check_window_libraries(fake_check(DEBIAN), {"DISPLAY": ":0"}, "linux")
    assert result.status == "fail"
    assert result.line() == (
        "✗ window libraries: Qt lacks libxcb-icccm.so.4, libxcb-keysyms.so.1: the window cannot "
        "open → run: sudo apt-get install -y libxcb-icccm4 libxcb-keysyms1")


def test_doctor_only_informs_where_no_window_opens() -> None:
    for environ in ({}, {"DISPLAY": ":0", "QT_QPA_PLATFORM": "offscreen"},
                    {"WAYLAND_DISPLAY": "wayland-0"}):
        result = doctor.check_window_libraries(fake_check(FEDORA), environ, "linux")
        assert result.status == "info", environ
        assert result.hint == "run: sudo dnf install -y xcb-util-wm xcb-util-keysyms"


def test_doctor_passes_unavailable_and_other_systems() -> None:
    assert doctor.check_window_libraries(fake_check(output=LDD_COMPLETE), {"DISPLAY": ":0"},
                                         "linux").status == "pass"
    cannot = LibraryCheck((PLUGIN,), error="could not run ldd on x: no ldd")
    assert doctor.check_window_libraries(cannot, {"DISPLAY": ":0"}, "linux").status == "unavailable"
    assert doctor.check_window_libraries(None, {}, "darwin").status == "info"


# -- the real thing ----------------------------------------------------------------------------


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="ldd and libqxcb are Linux's")
def test_the_real_plugin_is_checked_with_the_real_ldd() -> None:
    result = check_libraries()
    if not result.checked:
        pytest.skip("PySide6's X11 plugin is not installed here")
    assert not result.error, result.error
    assert result.checked[0].name == "libqxcb.so"
    assert all(".so" in soname for soname in result.missing)
    if result.missing:  # this machine lacks some: the message says how to get them
        assert result.how_to_install()
