"""Text that leaves fwrd for a terminal or a spreadsheet, made inert.

Slide names come from other people's files: `tumor\\x1b[2J.svs` would clear the terminal of whoever reads
fwrd's messages, and `=HYPERLINK(...).svs` written verbatim into slides.csv is a formula that Excel or
LibreOffice runs when the table is opened (CSV injection).

    for_terminal("tumor\\x1b[2J")    -> 'tumor\\\\x1b[2J'   control characters shown, never obeyed
    csv_cell("=1+1")                 -> "'=1+1"           OWASP's rule: a leading ' turns it into text
    from_csv_cell("'=1+1")           -> '=1+1'            what fwrd-eval reads back

A cell is prefixed when it starts with a character a spreadsheet treats as a formula (= + - @, tab, CR;
OWASP, "CSV Injection") or with the quote itself, so `from_csv_cell` always undoes `csv_cell` exactly.
"""

from __future__ import annotations

import unicodedata

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_QUOTE = "'"
# bidirectional embeddings, overrides and isolates: they reorder what a terminal shows ("Trojan Source")
_BIDI = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def for_terminal(text: str) -> str:
    """`text` with control characters (C0, DEL, C1, bidi overrides) and undecodable file-name bytes
    written as escapes (`\\x1b`, `\\u202e`), so a message shows a name instead of obeying it."""
    return "".join(_escape(ch) for ch in text)


def _escape(ch: str) -> str:
    code = ord(ch)
    if 0xDC80 <= code <= 0xDCFF:  # a byte that was not UTF-8 in a file name (os.fsdecode's surrogateescape)
        return f"\\x{code - 0xDC00:02x}"
    category = unicodedata.category(ch)
    if category == "Cc" or ch in _BIDI or category == "Cs":
        return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"
    return ch


def csv_cell(text: str) -> str:
    """`text` as a CSV cell a spreadsheet shows as text (OWASP: prefix a single quote)."""
    return _QUOTE + text if text.startswith(FORMULA_STARTS + (_QUOTE,)) else text


def from_csv_cell(cell: str) -> str:
    """The text `csv_cell` was given."""
    return cell[1:] if cell.startswith(_QUOTE) else cell
