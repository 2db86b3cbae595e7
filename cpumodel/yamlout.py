"""The one YAML writer: every YAML text cpumodel writes (emit --format yaml, baseline, defaults,
capture) is built here, so no caller formats YAML with f-strings.

Profiles are read back by cpumodel itself (``yamlsrc``), by editors and by people, so the writer
keeps the layout a person would write (comments, hex register values, flow lists) while making
every piece of untrusted text safe: strings are double-quoted with ``escape.yaml_str``, comments
are one line with ``escape.one_line``, keys are checked to be plain names. The result always
loads back as the values given (tested with arbitrary text in tests/test_hostile.py).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from cpumodel.escape import one_line, yaml_str

#: Keys and words written unquoted: names that YAML 1.1 and 1.2 both read as the same string.
_PLAIN = re.compile(r"[A-Za-z_][A-Za-z0-9_.+-]*")
#: Plain words YAML 1.1 would read as something other than a string.
_NOT_STRINGS = frozenset({"y", "n", "yes", "no", "on", "off", "true", "false", "null", "nan", "inf"})

Scalar = str | int | bool | None


def word(text: str) -> str:
    """``text`` unquoted when it is a plain name that reads back as itself, else double-quoted."""
    if _PLAIN.fullmatch(text) and text.lower() not in _NOT_STRINGS:
        return text
    return yaml_str(text)


def scalar(value: Scalar) -> str:
    """A YAML scalar: strings always double-quoted, integers in decimal, booleans, null."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    return yaml_str(value)


def hex64(value: int, digits: int = 16) -> str:
    """A 64-bit register value as cpumodel writes it: ``0x`` and (at least) ``digits`` hex digits."""
    if not 0 <= value < 1 << 64:
        raise ValueError(f"not a 64-bit unsigned value: {value}")
    return f"{value:#0{digits + 2}x}"


class Writer:
    """A YAML document built line by line (block mappings, flow or block lists, comments)."""

    def __init__(self) -> None:
        self._lines: list[str] = []

    def comment(self, text: str, indent: int = 0) -> None:
        """``# text``: one line whatever ``text`` holds."""
        self._lines.append(" " * indent + ("# " + one_line(text)).rstrip())

    def wrapped(self, text: str, first: str = "  - ", rest: str = "    ", width: int = 110) -> None:
        """A comment wrapped over several ``#`` lines (``first``/``rest`` indent them)."""
        import textwrap

        self._lines += ["#" + line for line in textwrap.wrap(one_line(text), width, initial_indent=first,
                                                             subsequent_indent=rest, break_on_hyphens=False,
                                                             break_long_words=False)]

    def _line(self, key: str, value: str | None, comment: str | None, indent: int) -> None:
        line = " " * indent + f"{word(key)}:" + (f" {value}" if value is not None else "")
        if comment:
            line += "  # " + one_line(comment)
        self._lines.append(line)

    def value(self, key: str, value: Scalar, comment: str | None = None, indent: int = 0) -> None:
        """``key: value`` with a string value always quoted."""
        self._line(key, scalar(value), comment, indent)

    def word(self, key: str, value: str, comment: str | None = None, indent: int = 0) -> None:
        """``key: value`` with ``value`` unquoted when it is a plain name (roles, versions)."""
        self._line(key, word(value), comment, indent)

    def hex(self, key: str, value: int, comment: str | None = None, indent: int = 0, digits: int = 16) -> None:
        """``KEY: 0x...`` (a register value)."""
        self._line(key, hex64(value, digits), comment, indent)

    def flow(self, key: str, items: Iterable[str], indent: int = 0) -> None:
        """``key: [a, b]`` (plain names unquoted)."""
        self._line(key, "[" + ", ".join(word(i) for i in items) + "]", None, indent)

    def mapping(self, key: str, indent: int = 0) -> None:
        """``key:`` opening a block mapping or list written below it."""
        self._line(key, None, None, indent)

    def item(self, value: str, indent: int = 2) -> None:
        """``- value`` in a block list (a string, quoted unless a plain name)."""
        self._lines.append(" " * indent + f"- {word(value)}")

    def text(self) -> str:
        return "\n".join(self._lines) + "\n"
