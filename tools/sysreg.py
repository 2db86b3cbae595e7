"""Parser for Linux's declarative system-register table, ``arch/arm64/tools/sysreg``.

The format is documented at the top of that file (Sysreg / SysregFields / Fields /
Res0 / Res1 / Unkn / Field / Enum / SignedEnum / UnsignedEnum / Mapping blocks).
This module only reads the text; it never ships any of it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class SrField:
    name: str
    msb: int
    lsb: int
    kind: str  # "field", "enum", "res0", "res1", "unkn", "raz"
    signed: bool = False
    enum_kind: str = ""  # "Enum", "SignedEnum", "UnsignedEnum"
    values: dict[int, str] = field(default_factory=dict)
    line: int = 0


@dataclass
class SrRegister:
    name: str
    encoding: tuple[int, int, int, int, int] | None
    fields: list[SrField] = field(default_factory=list)
    line: int = 0
    mapping: str | None = None


_BITS = re.compile(r"^(\d+)(?::(\d+))?$")


def _bits(text: str) -> tuple[int, int]:
    m = _BITS.match(text)
    if not m:
        raise ValueError(f"bad bit range {text!r}")
    msb = int(m.group(1))
    lsb = int(m.group(2)) if m.group(2) is not None else msb
    return msb, lsb


def parse(text: str) -> dict[str, SrRegister]:
    """Parse the sysreg table; returns registers by name (SysregFields expanded)."""
    regs: dict[str, SrRegister] = {}
    shared: dict[str, list[SrField]] = {}
    cur: SrRegister | None = None
    cur_shared: str | None = None
    cur_fields: list[SrField] = []
    enum: SrField | None = None
    pending: list[tuple[SrRegister, int, str]] = []  # Fields may name a later block
    in_prefix = False  # Prefix blocks give alternative layouts of non-ID registers: skipped
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        tok = line.split()
        kw = tok[0]
        if in_prefix:
            in_prefix = kw != "EndPrefix"
            continue
        if kw == "Prefix":
            in_prefix = True
            continue
        if enum is not None:
            if kw == "EndEnum":
                cur_fields.append(enum)
                enum = None
            else:
                enum.values[int(tok[0], 0)] = tok[1]
            continue
        if kw == "Sysreg":
            enc = tuple(int(t) for t in tok[2:7])
            cur = SrRegister(tok[1], enc if len(enc) == 5 else None, line=lineno)  # type: ignore[arg-type]
            cur_fields = cur.fields
        elif kw == "SysregFields":
            cur_shared = tok[1]
            cur_fields = []
        elif kw == "EndSysreg":
            assert cur is not None
            regs[cur.name] = cur
            cur = None
        elif kw == "EndSysregFields":
            assert cur_shared is not None
            shared[cur_shared] = cur_fields
            cur_shared = None
        elif kw == "Fields":
            assert cur is not None
            pending.append((cur, len(cur.fields), tok[1]))
        elif kw == "Mapping":
            assert cur is not None
            cur.mapping = tok[1]
        elif kw in ("Res0", "Res1", "Unkn", "Raz"):
            msb, lsb = _bits(tok[1])
            cur_fields.append(SrField(kw.lower(), msb, lsb, kw.lower(), line=lineno))
        elif kw == "Field":
            msb, lsb = _bits(tok[1])
            cur_fields.append(SrField(tok[2], msb, lsb, "field", line=lineno))
        elif kw in ("Enum", "SignedEnum", "UnsignedEnum"):
            msb, lsb = _bits(tok[1])
            enum = SrField(tok[2], msb, lsb, "enum", signed=kw == "SignedEnum",
                           enum_kind=kw, line=lineno)
        else:
            raise ValueError(f"line {lineno}: unknown directive {kw!r}")
    for reg, at, name in reversed(pending):
        reg.fields[at:at] = shared.get(name, [])  # some name a layout defined in C only
    return regs


def parse_file(path: str | Path) -> dict[str, SrRegister]:
    return parse(Path(path).read_text())
