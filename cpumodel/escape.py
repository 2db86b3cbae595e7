"""Untrusted text (names, descriptions, paths, sources) made safe for each output.

A profile is untrusted input: its ``name:``, ``description:``, ``sources:``, its file name and
directory can hold anything a YAML string or a file system allows. Every emitter and every
human output puts such text through one of these functions, never raw:

* ``one_line`` - for terminals, logs and line-based formats (``#`` comments of the kvm list, the
  qemu notes, YAML comments): control characters (C0, DEL, C1), line and paragraph separators,
  bidirectional overrides (the "Trojan Source" characters), other format characters,
  unassigned and private code points, lone surrogates are written as ``\\xNN``, ``\\uNNNN``
  or ``\\UNNNNNNNN``. A non-UTF-8 byte of a file name (a surrogate escape) is written as the
  byte, ``\\xNN``. What remains is printable text on one line: it cannot move the cursor, set
  a terminal title, start a new line in a log or a line-based file, or reorder what is shown.
* ``c_comment`` - text inside a C ``/* ... */`` comment: ``one_line``, and ``*/`` and ``/*``
  broken up so the comment can neither end early nor nest.
* ``shell_word`` - one word for a POSIX shell (``shlex.quote``).
* ``yaml_str`` - a YAML double-quoted scalar that reads back as exactly ``text``.

JSON output needs nothing here: ``json.dumps`` escapes every string it writes.

(Top-level so that the check path, which renders text, does not import the emit package;
``cpumodel.emit.escape`` is the same module for the emitters.)
"""

from __future__ import annotations


def _yaml_printable(ch: str) -> bool:
    """Whether YAML allows the character unescaped in a document (YAML 1.1/1.2 "c-printable",
    without TAB and the line breaks, which are escaped here: x20-x7E, xA0-uD7FF, uE000-uFFFD,
    U00010000-U0010FFFF). PyYAML refuses the others even in comments. (Compared, not matched
    with a regular expression: compiling that character class cost every start 3-6 ms.)"""
    c = ord(ch)
    return 0x20 <= c <= 0x7E or 0xA0 <= c <= 0xD7FF or 0xE000 <= c <= 0xFFFD or 0x10000 <= c <= 0x10FFFF


def _escape_char(ch: str) -> str:
    c = ord(ch)
    if 0xDC80 <= c <= 0xDCFF:  # surrogate escape of a non-UTF-8 byte (os.fsdecode of a file name)
        return f"\\x{c - 0xDC00:02x}"
    if c <= 0xFF:
        return f"\\x{c:02x}"
    if c <= 0xFFFF:
        return f"\\u{c:04x}"
    return f"\\U{c:08x}"


def _safe(ch: str) -> bool:
    return ch == " " or (ch.isprintable() and _yaml_printable(ch))


def one_line(text: str) -> str:
    """``text`` with every character that is not plainly printable escaped (see the module doc)."""
    if text.isprintable() and text.isascii():  # the common case, in C
        return text
    return "".join(ch if _safe(ch) else _escape_char(ch) for ch in text)


def c_comment(text: str) -> str:
    """Text for the inside of a C block comment: one line, and no ``*/`` or ``/*`` in it."""
    out = one_line(text)
    # Repeat: "*/*/" needs two passes ("*\\/*/" -> "*\\/*\\/").
    while "*/" in out or "/*" in out:
        out = out.replace("*/", "*\\/").replace("/*", "/\\*")
    return out


def shell_word(text: str) -> str:
    """One POSIX shell word that expands to exactly ``text``."""
    import shlex

    return shlex.quote(text)


def yaml_str(text: str) -> str:
    """A YAML double-quoted scalar that reads back as ``text``.

    Printable characters stay as they are; the rest (controls, DEL, C1, line separators, lone
    surrogates, U+FFFE/U+FFFF) are escaped with YAML's ``\\x``, ``\\u`` or ``\\U`` forms. (JSON's
    escaping would write characters outside the BMP as UTF-16 surrogate pairs, which YAML
    refuses.) A surrogate escape of a non-UTF-8 byte cannot be represented in a YAML text: it
    is written as U+FFFD.
    """
    out = ['"']
    for ch in text:
        c = ord(ch)
        if ch in ('"', "\\"):
            out.append("\\" + ch)
        elif 0x20 <= c <= 0x7E or (0xA0 <= c <= 0xFFFD and _yaml_printable(ch)
                                  and ch not in "\u2028\u2029") or 0x10000 <= c <= 0x10FFFF:
            out.append(ch)
        elif 0xD800 <= c <= 0xDFFF:
            out.append("\\ufffd")
        elif c <= 0xFF:
            out.append(f"\\x{c:02x}")
        elif c <= 0xFFFF:
            out.append(f"\\u{c:04x}")
        else:
            out.append(f"\\U{c:08x}")
    out.append('"')
    return "".join(out)
