"""File names from the inbox as the database, the logs and the output folders need them.

A Linux file name is bytes; Python decodes the bytes that are not UTF-8 as lone surrogates
(surrogateescape), and such a string cannot be stored (database drivers encode UTF-8), nor
written into a PNG's name by OpenCV. So:
- `path_to_text` / `text_to_path`: lossless text for the database, and back: a path that is
  valid Unicode is itself; any other is "escaped:" and its bytes percent-encoded.
- `printable`: for people (logs, the QA page, output names): undecodable bytes as \\xff,
  control characters escaped.
- `output_name`: an output name of at most `NAME_BYTES` bytes whatever the input name.
"""

from __future__ import annotations

import os
from urllib.parse import quote, unquote_to_bytes

ESCAPED = "escaped:"
# Printable ASCII stays as it is in an escaped path; '%' itself is encoded.
_SAFE = "".join(chr(c) for c in range(0x20, 0x7F) if chr(c) != "%")
# Our output names stay well under the 255-byte limit of a name, leaving room for the temporary
# names they are written under (".<name>.tmp.png").
NAME_BYTES = 200
_LONGEST_SUFFIX = 16


def _is_unicode(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def path_to_text(path: str) -> str:
    """The path as lossless text for the database (see the module's docstring)."""
    if _is_unicode(path) and not path.startswith(ESCAPED):
        return path
    return ESCAPED + quote(os.fsencode(path), safe=_SAFE)


def text_to_path(text: str) -> str:
    """The path `path_to_text` gave `text` for."""
    if text.startswith(ESCAPED):
        return os.fsdecode(unquote_to_bytes(text[len(ESCAPED):]))
    return text


def printable(name: str) -> str:
    """A name for people: undecodable bytes as \\xff, control characters as \\x1b (a file name
    cannot forge log lines)."""
    text = os.fsencode(name).decode("utf-8", "backslashreplace")
    if text.isprintable():  # most names: no character to look at one by one
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


def output_name(prefix: str, name: str, ending: str | None = None) -> str:
    """`prefix` + the printable name, cut so that the whole is at most `NAME_BYTES` bytes.

    `ending` replaces the name's suffix (`_heatmap.png`); None keeps the suffix, if short. A cut
    name ends with "~" before its suffix; the prefix (the inspection's id) is always kept.
    """
    text = printable(name)
    stem, dot, suffix = text.rpartition(".")
    if not dot or not stem or len(suffix) + 1 > _LONGEST_SUFFIX:
        stem, suffix = text, ""
    else:
        suffix = "." + suffix
    tail = suffix if ending is None else ending
    room = NAME_BYTES - len(prefix.encode()) - len(tail.encode())
    if len(stem.encode()) > room:
        stem = stem.encode()[:room - 1].decode("utf-8", "ignore") + "~"
    return f"{prefix}{stem}{tail}"
