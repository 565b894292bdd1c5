"""Which parsers made a document's text: raise ``PARSER_VERSION`` when a parser reads more.

Each document records the version that last read it (``documents.parser_version``; 1 for those
read before versions were recorded). A file that was skipped or failed under an older version
is read again at the next sync even when it has not changed, so a format Bastion learns to read
reaches files already in a library instead of waiting for them to be edited.

Versions:
    1: before versions were recorded.
    2: legacy ``.xls`` workbooks read (were skipped as legacy Office); text files with unknown
       extensions or none sniffed and read (were skipped as unsupported).
"""

PARSER_VERSION = 2
