"""Which parsers made a document's text: raise ``PARSER_VERSION`` when a parser reads more.

Each document records the version that last read it (``documents.parser_version``; 1 for those
read before versions were recorded). At the next sync a file read by an older version is read
again, even though it has not changed, when the newer parsers may read it differently: if it was
skipped or failed, or if it was indexed and is of a kind whose parser changed since. So a format
Bastion learns to read reaches files already in a library instead of waiting for them to be
edited.

Versions:
    1: before versions were recorded.
    2: legacy ``.xls`` workbooks read (were skipped as legacy Office); text files with unknown
       extensions or none sniffed and read (were skipped as unsupported); XML feeds' escaped
       HTML read as text (was indexed as tag soup).
    3: Outlook ``.msg`` messages read (were skipped as unsupported).
    4: RTF documents read (were skipped as unsupported).
    5: Word 97-2003 ``.doc`` documents read (were skipped as legacy Office).
    6: PowerPoint 97-2003 ``.ppt`` presentations read (were skipped as legacy Office).
    7: ``.ppt`` speaker notes read (were left out).
"""

from __future__ import annotations

PARSER_VERSION = 7

# Kinds of indexed documents whose text a version changed: (version, kinds).
_INDEXED_KINDS_CHANGED: tuple[tuple[int, frozenset[str]], ...] = (
    (2, frozenset({"xml"})),
    (7, frozenset({"ppt"})),
)
# States that a newer parser may turn into something else whatever the kind.
_NOTHING_READ = frozenset({"skipped", "failed"})


def read_again(state: str, kind: str | None, version: int) -> bool:
    """Whether a settled, unchanged document last read by parser ``version`` is read again."""
    if version >= PARSER_VERSION:
        return False
    if state in _NOTHING_READ:
        return True
    return state == "indexed" and any(
        changed > version and kind in kinds for changed, kinds in _INDEXED_KINDS_CHANGED
    )
