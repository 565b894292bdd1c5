"""Opening a cited document in the desktop's own viewer, at the cited page where one can.

A PDF viewer takes a page on its command line, each in its own way (``VIEWERS``); a ``#page=N``
fragment on a file URL does not work portably (xdg-open and the Windows shell drop it or fail on
it). So: a PDF with a known page opens in an installed viewer from the table, the desktop's
default PDF application first when it is one of them; anything else opens with the desktop's
default application (``xdg-open``, macOS ``open``, Windows ``os.startfile``).

Safety: the file must still be a regular file inside one of its collection's folders (links are
resolved first, so one pointing out of the folders is refused); the command is a list run
without a shell; the only things put on it are the viewer's own options, the page as a number
and the file's absolute path, which starts with ``/`` (or a drive letter) and so can never be
read as an option, whatever the file is called.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from bastion.desktop.errors import BastionError

NO_PAGE_VIEWER = "opened at page 1: no PDF viewer that takes a page was found"

# How long asking the desktop for its default PDF application may take before it is skipped.
DEFAULT_APP_TIMEOUT_S = 2.0


class OpenRefused(BastionError):
    """The file is not one Bastion may open: outside the collection's folders, gone, or not a
    regular file."""


@dataclass(frozen=True)
class Viewer:
    """A PDF viewer that opens a document at a page.

    ``args`` is the command line after the executable; ``{page}`` (1-based) and ``{path}`` (the
    absolute path) are filled in, each as a whole argument or inside one.
    """

    name: str
    executables: tuple[str, ...]
    args: tuple[str, ...]
    desktop_ids: tuple[str, ...] = ()  # its .desktop file names, to spot the default application


# Page numbers in the index are 1-based page indexes (the n-th page of the file), not printed
# labels, so viewers that tell the two apart are given the index.
VIEWERS: tuple[Viewer, ...] = (
    Viewer("Evince", ("evince",), ("--page-index={page}", "{path}"),
           ("org.gnome.Evince.desktop", "evince.desktop")),
    Viewer("Okular", ("okular",), ("--page", "{page}", "{path}"),
           ("org.kde.okular.desktop", "okularApplication_pdf.desktop", "okular.desktop")),
    Viewer("zathura", ("zathura",), ("--page={page}", "{path}"),
           ("org.pwmt.zathura.desktop", "org.pwmt.zathura-pdf-mupdf.desktop",
            "org.pwmt.zathura-pdf-poppler.desktop", "zathura.desktop")),
    Viewer("Atril", ("atril",), ("--page-index={page}", "{path}"), ("atril.desktop",)),
    Viewer("Xreader", ("xreader",), ("--page-index={page}", "{path}"), ("xreader.desktop",)),
    Viewer("sioyek", ("sioyek",), ("--page", "{page}", "{path}"), ("sioyek.desktop",)),
    Viewer("MuPDF", ("mupdf", "mupdf-gl", "mupdf-x11"), ("{path}", "{page}"), ("mupdf.desktop",)),
    Viewer("Xpdf", ("xpdf",), ("{path}", "{page}"), ("xpdf.desktop",)),
    Viewer("SumatraPDF", ("SumatraPDF",), ("-page", "{page}", "{path}")),
)


@dataclass(frozen=True)
class OpenPlan:
    """How a file is opened.

    ``command`` is run as is (no shell); None means the Windows shell opens ``path``
    (``os.startfile``). ``page`` is the page it opens at (None: its start); ``note`` is what
    to tell the user when the page asked for could not be honoured.
    """

    path: str
    command: tuple[str, ...] | None
    page: int | None
    viewer: str
    note: str = ""


Which = Callable[[str], str | None]
DefaultApp = Callable[[], str | None]
Launch = Callable[[OpenPlan], None]


def is_pdf(path: str | os.PathLike[str]) -> bool:
    return Path(path).suffix.lower() == ".pdf"


def checked_file(path: str | os.PathLike[str], roots: Sequence[str]) -> str:
    """The absolute, link-free path of ``path`` once it is known to be a regular file inside one
    of ``roots`` (a collection's folders).

    Raises:
        OpenRefused: it is outside every root (also through a link), gone, or not a file.
    """
    shown = os.fspath(path)
    real = os.path.realpath(shown)
    inside = False
    for root in roots:
        real_root = os.path.realpath(root)
        try:
            inside = os.path.commonpath([real, real_root]) == real_root
        except ValueError:  # another drive (Windows)
            inside = False
        if inside:
            break
    if not inside:
        folders = ", ".join(roots) if roots else "none"
        raise OpenRefused(
            f"Bastion did not open {shown}: it is not inside the collection's folders "
            f"({folders}), and Bastion opens only files under the folders you chose. If you "
            "trust it, open it from your file manager; to search it, add its folder on the "
            "Library page.")
    try:
        st = os.stat(real)
    except FileNotFoundError:
        raise OpenRefused(f"{shown} is no longer there: it was moved or deleted. Sync the "
                          "collection on the Library page to bring the index up to date.") from None
    except OSError as error:
        raise OpenRefused(f"Bastion cannot reach {shown} ({error.strerror or error}). Check "
                          "that its drive or network folder is connected, then try again.") from None
    if not stat.S_ISREG(st.st_mode):
        raise OpenRefused(f"Bastion did not open {shown}: it is no longer a regular file. Sync "
                          "the collection on the Library page to bring the index up to date.")
    return real


def viewer_command(viewer: Viewer, executable: str, path: str, page: int) -> tuple[str, ...]:
    """The command line that opens ``path`` (absolute) at ``page`` (1-based) in ``viewer``."""
    if not os.path.isabs(path):
        raise ValueError(f"a viewer is given absolute paths only, not {path!r}")
    if isinstance(page, bool) or not isinstance(page, int) or page < 1:
        raise ValueError(f"a page is a number from 1, not {page!r}")
    return (executable, *(arg.format(page=page, path=path) for arg in viewer.args))


def find_viewer(which: Which, default_app: str | None = None) -> tuple[Viewer, str] | None:
    """The installed page-capable viewer to use and its executable: the desktop's default PDF
    application (``default_app``, a .desktop file name) when the table knows it, else the first
    installed one in table order."""
    ordered = list(VIEWERS)
    if default_app:
        wanted = default_app.strip().lower()
        ordered.sort(key=lambda v: wanted not in (d.lower() for d in v.desktop_ids))
    for viewer in ordered:
        for name in viewer.executables:
            found = which(name)
            if found:
                return viewer, found
    return None


def plan_open(path: str, page: int | None, *, platform: str = sys.platform,
              which: Which = shutil.which, default_app: DefaultApp | None = None) -> OpenPlan:
    """How to open ``path`` (absolute, already checked) at ``page`` on ``platform``.

    Raises:
        BastionError: nothing on this system can open files.
    """
    wants_page = page is not None and page >= 1 and is_pdf(path)
    note = NO_PAGE_VIEWER if wants_page else ""
    if wants_page:
        assert page is not None
        preferred = None
        if platform.startswith("linux") or "bsd" in platform:
            preferred = (default_app or xdg_default_pdf_app)()
        found = find_viewer(which, preferred)
        if found is not None:
            viewer, executable = found
            return OpenPlan(path, viewer_command(viewer, executable, path, page), page, viewer.name)
    if platform == "win32":
        return OpenPlan(path, None, None, "the default application", note)
    if platform == "darwin":
        return OpenPlan(path, ("open", path), None, "the default application", note)
    opener = which("xdg-open")
    if opener is None:
        raise BastionError(f"No application to open files was found (xdg-open is missing). "
                           f"Open the file from your file manager: {path}")
    return OpenPlan(path, (opener, path), None, "the default application", note)


def xdg_default_pdf_app() -> str | None:
    """The desktop's default application for PDF files (a .desktop file name), or None."""
    xdg_mime = shutil.which("xdg-mime")
    if xdg_mime is None:
        return None
    try:
        done = subprocess.run([xdg_mime, "query", "default", "application/pdf"],
                              capture_output=True, text=True, timeout=DEFAULT_APP_TIMEOUT_S,
                              stdin=subprocess.DEVNULL, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    answer = done.stdout.strip()
    return answer or None


def launch(plan: OpenPlan) -> None:
    """Start the viewer of ``plan`` and return at once (it outlives nothing of ours).

    Raises:
        BastionError: the viewer could not be started.
    """
    try:
        if plan.command is None:
            os.startfile(plan.path)  # type: ignore[attr-defined]  # Windows only
            return
        subprocess.Popen(list(plan.command), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL, close_fds=True,
                         start_new_session=os.name == "posix")
    except OSError as error:
        raise BastionError(f"Could not start {plan.viewer} ({error.strerror or error}). Open the "
                           f"file from your file manager: {plan.path}") from error


def open_document(path: str, page: int | None, roots: Sequence[str], *,
                  platform: str = sys.platform, which: Which = shutil.which,
                  default_app: DefaultApp | None = None, start: Launch = launch) -> OpenPlan:
    """Open ``path`` (a collection's file) at ``page`` when a viewer can, else at its start.

    Args:
        path: The file, as the library names it.
        page: The 1-based page to show (None: the start; only PDFs take one).
        roots: The folders of the file's collection; anything outside them is refused.

    Returns:
        The plan that was started; its ``note`` says when the page could not be honoured.

    Raises:
        OpenRefused: outside the collection's folders, gone, or not a regular file.
        BastionError: no application could be started.
    """
    real = checked_file(path, roots)
    plan = plan_open(real, page, platform=platform, which=which, default_app=default_app)
    start(plan)
    return plan
