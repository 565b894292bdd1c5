"""Opening a cited document at its page: the viewer table, the fallback and what is refused."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bastion.desktop.errors import BastionError
from bastion.desktop.open_document import (
    NO_PAGE_VIEWER,
    VIEWERS,
    OpenPlan,
    OpenRefused,
    Which,
    checked_file,
    find_viewer,
    open_document,
    plan_open,
    viewer_command,
)


def installed(*names: str) -> Which:
    """A ``which`` that finds ``names`` in /usr/bin and nothing else."""
    return lambda name: f"/usr/bin/{name}" if name in names else None


def no_default() -> str | None:
    return None


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "docs"
    root.mkdir()
    return root


# -- the table ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("executable", "expected"), [
    ("evince", ["--page-index=7", "/d/a.pdf"]),
    ("okular", ["--page", "7", "/d/a.pdf"]),
    ("zathura", ["--page=7", "/d/a.pdf"]),
    ("atril", ["--page-index=7", "/d/a.pdf"]),
    ("xreader", ["--page-index=7", "/d/a.pdf"]),
    ("sioyek", ["--page", "7", "/d/a.pdf"]),
    ("mupdf", ["/d/a.pdf", "7"]),
    ("xpdf", ["/d/a.pdf", "7"]),
    ("SumatraPDF", ["-page", "7", "/d/a.pdf"]),
])
def test_each_known_viewer_is_given_the_page_its_own_way(executable: str,
                                                          expected: list[str]) -> None:
    plan = plan_open("/d/a.pdf", 7, platform="linux", which=installed(executable),
                     default_app=no_default)
    assert plan.command == (f"/usr/bin/{executable}", *expected)
    assert plan.page == 7 and plan.note == ""


def test_every_viewer_in_the_table_puts_the_path_and_page_on_its_command_line() -> None:
    for viewer in VIEWERS:
        command = viewer_command(viewer, "/bin/v", "/d/{page}.pdf", 12)
        assert command[0] == "/bin/v"
        assert "/d/{page}.pdf" in command  # the path is one argument, never formatted itself
        assert any("12" in arg for arg in command[1:])


def test_the_desktops_default_pdf_application_comes_first_when_the_table_knows_it() -> None:
    which = installed("evince", "okular")

    def chosen(default_app: str | None) -> str:
        found = find_viewer(which, default_app)
        assert found is not None
        return found[0].name

    assert chosen(None) == "Evince"  # table order
    assert chosen("org.kde.okular.desktop") == "Okular"
    assert chosen("someviewer.desktop") == "Evince"  # unknown: table order
    plan = plan_open("/d/a.pdf", 2, platform="linux", which=which,
                     default_app=lambda: "org.kde.okular.desktop\n")
    assert plan.command == ("/usr/bin/okular", "--page", "2", "/d/a.pdf")


def test_without_a_page_capable_viewer_the_file_opens_normally_and_says_so() -> None:
    plan = plan_open("/d/a.pdf", 4, platform="linux", which=installed("xdg-open"),
                     default_app=no_default)
    assert plan.command == ("/usr/bin/xdg-open", "/d/a.pdf")
    assert plan.page is None and plan.note == NO_PAGE_VIEWER
    mac = plan_open("/d/a.pdf", 4, platform="darwin", which=installed(), default_app=no_default)
    assert mac.command == ("open", "/d/a.pdf") and mac.note == NO_PAGE_VIEWER
    windows = plan_open("C:/d/a.pdf", 4, platform="win32", which=installed(),
                        default_app=no_default)
    assert windows.command is None and windows.note == NO_PAGE_VIEWER  # os.startfile


def test_files_without_a_page_or_that_are_not_pdfs_open_with_the_default_application() -> None:
    which = installed("evince", "xdg-open")
    for path, page in (("/d/a.pdf", None), ("/d/notes.txt", 3), ("/d/report.docx", 2)):
        plan = plan_open(path, page, platform="linux", which=which, default_app=no_default)
        assert plan.command == ("/usr/bin/xdg-open", path)
        assert plan.note == ""  # no page was asked of a viewer, so nothing to excuse


def test_no_opener_at_all_says_what_to_do() -> None:
    with pytest.raises(BastionError, match=r"file manager: /d/a\.txt"):
        plan_open("/d/a.txt", None, platform="linux", which=installed(), default_app=no_default)


def test_the_command_builder_takes_absolute_paths_and_whole_pages_only() -> None:
    evince = VIEWERS[0]
    with pytest.raises(ValueError):
        viewer_command(evince, "evince", "-p.pdf", 1)
    for page in (0, -1, True, "3"):
        with pytest.raises(ValueError):
            viewer_command(evince, "evince", "/d/a.pdf", page)  # type: ignore[arg-type]


# -- what may be opened ---------------------------------------------------------------------------


def test_a_file_named_like_an_option_is_passed_as_an_absolute_path(folder: Path) -> None:
    odd = folder / "--page-index=999 -x.pdf"
    odd.write_bytes(b"%PDF-1.4\n")
    started: list[OpenPlan] = []
    plan = open_document(str(odd), 3, [str(folder)], platform="linux",
                         which=installed("evince"), default_app=no_default, start=started.append)
    assert started == [plan]
    assert plan.command == ("/usr/bin/evince", "--page-index=3", os.path.realpath(odd))
    assert all(not arg.startswith("-") for arg in plan.command[2:])


def test_a_file_outside_the_collections_folders_is_refused(folder: Path, tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere.pdf"
    outside.write_bytes(b"%PDF-1.4\n")
    started: list[OpenPlan] = []
    with pytest.raises(OpenRefused, match="not inside the collection's folders"):
        open_document(str(outside), 1, [str(folder)], platform="linux", which=installed("evince"),
                      default_app=no_default, start=started.append)
    # A sibling folder whose name starts like the root is outside too.
    sibling = tmp_path / "docs-private"
    sibling.mkdir()
    (sibling / "a.pdf").write_bytes(b"%PDF-1.4\n")
    with pytest.raises(OpenRefused):
        checked_file(sibling / "a.pdf", [str(folder)])
    with pytest.raises(OpenRefused):  # a collection with no folders left opens nothing
        checked_file(outside, [])
    assert started == []


def test_a_link_inside_the_folder_that_points_out_of_it_is_refused(folder: Path,
                                                                    tmp_path: Path) -> None:
    secret = tmp_path / "secret.pdf"
    secret.write_bytes(b"%PDF-1.4\n")
    (folder / "innocent.pdf").symlink_to(secret)
    with pytest.raises(OpenRefused, match="not inside"):
        checked_file(folder / "innocent.pdf", [str(folder)])
    (folder / "sub").mkdir()
    inner = folder / "sub" / "inner.pdf"
    inner.write_bytes(b"%PDF-1.4\n")
    (folder / "link.pdf").symlink_to(inner)  # a link that stays inside is fine
    assert checked_file(folder / "link.pdf", [str(folder)]) == os.path.realpath(inner)


def test_a_gone_file_or_a_fifo_is_refused_with_what_to_do(folder: Path) -> None:
    with pytest.raises(OpenRefused, match=r"no longer there.*Sync the collection"):
        checked_file(folder / "gone.pdf", [str(folder)])
    fifo = folder / "pipe.pdf"
    os.mkfifo(fifo)
    with pytest.raises(OpenRefused, match="no longer a regular file"):
        checked_file(fifo, [str(folder)])


def test_a_viewer_that_cannot_start_is_reported(folder: Path) -> None:
    from bastion.desktop.open_document import launch

    doc = folder / "a.pdf"
    doc.write_bytes(b"%PDF-1.4\n")
    with pytest.raises(BastionError, match=r"Could not start Evince.*file manager"):
        launch(OpenPlan(str(doc), (str(folder / "no-such-viewer"), str(doc)), 1, "Evince"))
