"""Bytes to text: byte-order mark, then UTF-8, then charset detection; binary recognised."""

from __future__ import annotations

import codecs
from dataclasses import dataclass

from .verdicts import FileSkipped

_BOMS = (
    # UTF-32 first: its little-endian BOM starts with the UTF-16 one.
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)
_SAMPLE_BYTES = 64 * 1024
_DETECT_BYTES = 256 * 1024
# Bytes that do not occur in text: C0 controls other than tab, newlines, form feed, escape.
_CONTROL = bytes(b for b in range(32) if b not in b"\t\n\r\f\x0b\x1b") + b"\x7f"


@dataclass(frozen=True)
class DecodedText:
    """Text decoded from bytes, with the encoding used and whether bytes had to be replaced."""

    text: str
    encoding: str
    lossy: bool


def bom_encoding(data: bytes) -> tuple[str, int] | None:
    """The encoding named by a byte-order mark and the mark's length, or None."""
    for bom, name in _BOMS:
        if data.startswith(bom):
            return name, len(bom)
    return None


def looks_binary(sample: bytes) -> bool:
    """True for bytes that are not text: NUL bytes, or more than 10 % control bytes."""
    if not sample:
        return False
    if b"\x00" in sample:
        return True
    controls = len(sample) - len(sample.translate(None, _CONTROL))
    return controls * 10 > len(sample)


def looks_like_text(sample: bytes) -> bool:
    """True when the first bytes of a file of unknown type are text worth indexing.

    A byte-order mark (UTF-8/16/32) says so; otherwise there must be no NUL byte and few
    control bytes, and the bytes must be UTF-8 (a character cut at the end of the sample is
    fine) or an encoding charset-normalizer recognises with little "chaos".
    """
    if bom_encoding(sample) is not None:
        return True
    if looks_binary(sample):
        return False
    try:
        codecs.getincrementaldecoder("utf-8")(errors="strict").decode(sample, final=False)
        return True
    except UnicodeDecodeError:
        pass
    return _detect_encoding(sample) is not None


def _bomless_utf16(sample: bytes) -> str | None:
    """ "utf-16-le"/"utf-16-be" for mostly-Latin UTF-16 written without a byte-order mark.

    Such text has a NUL in every other byte (the high byte of ASCII-range characters), which
    would otherwise make it look binary.
    """
    sample = sample[: len(sample) // 2 * 2]
    pairs = len(sample) // 2
    if pairs < 2:
        return None
    even_nul, odd_nul = sample[0::2].count(0), sample[1::2].count(0)
    if odd_nul > 0.4 * pairs and even_nul < 0.05 * pairs:
        encoding = "utf-16-le"
    elif even_nul > 0.4 * pairs and odd_nul < 0.05 * pairs:
        encoding = "utf-16-be"
    else:
        return None
    try:
        text = codecs.getincrementaldecoder(encoding)(errors="strict").decode(sample, final=False)
    except UnicodeDecodeError:
        return None
    controls = sum(1 for ch in text if ch < " " and ch not in "\t\n\r\f\x0b")
    return encoding if controls * 10 <= len(text) else None


def _decode(data: bytes, encoding: str, *, final: bool) -> tuple[str, bool]:
    # An incremental decoder so a prefix cut inside a multi-byte character is not "lossy".
    decoder = codecs.getincrementaldecoder(encoding)(errors="replace")
    text = decoder.decode(data, final=final)
    return text, "\ufffd" in text


def decode_text(data: bytes, *, truncated: bool = False) -> DecodedText:
    """Decode the bytes of a text file.

    Args:
        data: The bytes (possibly only the first part of the file).
        truncated: True when ``data`` is a prefix, so a multi-byte character cut at the end
            is dropped rather than reported as damage.

    Returns:
        The decoded text.

    Raises:
        FileSkipped: The bytes are binary, not text.
    """
    final = not truncated
    bom = bom_encoding(data)
    if bom is not None:
        name, size = bom
        text, lossy = _decode(data[size:], name, final=final)
        return DecodedText(text, name, lossy)
    if looks_binary(data[:_SAMPLE_BYTES]):
        wide = _bomless_utf16(data[:_SAMPLE_BYTES])
        if wide is None:
            raise FileSkipped("binary file (not text)")
        text, lossy = _decode(data, wide, final=final)
        return DecodedText(text, wide, lossy)
    try:
        text = codecs.getincrementaldecoder("utf-8")(errors="strict").decode(data, final=final)
        return DecodedText(text, "utf-8", False)
    except UnicodeDecodeError:
        pass
    # Mostly UTF-8 with a few damaged bytes is still UTF-8; a legacy encoding produces far
    # more invalid sequences than valid multi-byte ones.
    replaced, _ = _decode(data, "utf-8", final=final)
    errors = replaced.count("\ufffd")
    multibyte = sum(1 for ch in replaced if ord(ch) > 0x7F) - errors
    if errors <= multibyte:
        return DecodedText(replaced, "utf-8", True)
    detected = _detect_encoding(data[:_DETECT_BYTES])
    if detected is None:
        return DecodedText(replaced, "utf-8", True)
    text, lossy = _decode(data, detected, final=final)
    return DecodedText(text, detected, lossy)


# Encodings most legacy files are really in, in order of preference. charset-normalizer
# judges short Western texts nearly equal in many code pages and sometimes picks an exotic one
# (cp775 for French); a small bonus for these keeps the common answer.
_COMMON = (
    "cp1252",
    "latin_1",
    "iso8859_15",
    "cp1250",
    "cp1251",
    "koi8_r",
    "cp932",
    "shift_jis",
    "euc_jp",
    "gb18030",
    "gb2312",
    "big5",
    "euc_kr",
    "cp949",
    "utf_16",
)
_COMMON_BONUS = 0.1


def _detect_encoding(sample: bytes) -> str | None:
    from charset_normalizer import from_bytes

    def rank(match: object) -> tuple[float, int]:
        encoding = str(getattr(match, "encoding", ""))
        chaos = float(getattr(match, "chaos", 1.0))
        common = encoding in _COMMON
        return (
            chaos - (_COMMON_BONUS if common else 0.0),
            _COMMON.index(encoding) if common else len(_COMMON),
        )

    matches = list(from_bytes(sample))
    if not matches:
        return None
    best = min(matches, key=rank)
    try:
        return codecs.lookup(best.encoding).name
    except LookupError:
        return None
