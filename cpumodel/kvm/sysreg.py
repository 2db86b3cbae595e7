"""The one reader of Linux's declarative system-register table, ``arch/arm64/tools/sysreg``.

The format is documented at the top of that file (Sysreg / SysregFields / Fields / Res0 / Res1 /
Unkn / Raz / Field / Enum / SignedEnum / UnsignedEnum / Mapping / Prefix blocks). :func:`blocks`
reads the text once, block by block, every item in file order; :func:`parse` gives the registers
with their ``Fields`` expanded (``tools/gen_registers.py``), and ``cpumodel.kvm.gen`` builds the
``<REG>_<FIELD>_SHIFT``-style constants from the same blocks. This module only reads the text; it
never ships any of it.
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
    prefix: str = ""  # inside a Prefix block (an alternative layout of a non-ID register)
    names: list[tuple[str, int]] = field(default_factory=list)  # every enum value line, aliases included


@dataclass
class SrRegister:
    name: str
    encoding: tuple[int, int, int, int, int] | None
    fields: list[SrField] = field(default_factory=list)
    line: int = 0
    mapping: str | None = None


@dataclass
class SrBlock:
    """One Sysreg or SysregFields block, its items in file order (Prefix items included)."""

    kind: str  # "Sysreg" | "SysregFields"
    name: str
    encoding: tuple[int, int, int, int, int] | None
    line: int
    items: list[SrField] = field(default_factory=list)
    fields_ref: tuple[int, str] | None = None  # (position among the unprefixed items, "Fields" name)
    mapping: str | None = None
    last_ref: str | None = None  # the last Fields or Mapping name


_BITS = re.compile(r"^(\d+)(?::(\d+))?$")
_VALUE = re.compile(r"0b[01]+")


def _bits(text: str) -> tuple[int, int]:
    m = _BITS.match(text)
    if not m:
        raise ValueError(f"bad bit range {text!r}")
    msb = int(m.group(1))
    lsb = int(m.group(2)) if m.group(2) is not None else msb
    return msb, lsb


def blocks(text: str) -> list[SrBlock]:
    """Every block of the table, in file order."""
    out: list[SrBlock] = []
    cur: SrBlock | None = None
    enum: SrField | None = None
    prefix = ""
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        tok = line.split()
        kw = tok[0]
        if enum is not None:
            if kw == "EndEnum":
                enum = None
            elif _VALUE.fullmatch(tok[0]):
                enum.values[int(tok[0], 0)] = tok[1]
                enum.names.append((tok[1], int(tok[0], 0)))
            # else: not a binary number ("0b0002 FEAT_BWE2" in 6.17-6.19's ID_AA64DFR2_EL1): skipped
            continue
        if kw in ("Sysreg", "SysregFields"):
            enc = tuple(int(t) for t in tok[2:7]) if kw == "Sysreg" else ()
            cur = SrBlock(kw, tok[1], enc if len(enc) == 5 else None, lineno)  # type: ignore[arg-type]
            out.append(cur)
            prefix = ""
        elif kw in ("EndSysreg", "EndSysregFields"):
            cur = None
        elif cur is None:
            raise ValueError(f"line {lineno}: {kw!r} outside a block")
        elif kw == "Prefix":
            prefix = tok[1] + "_"
        elif kw == "EndPrefix":
            prefix = ""
        elif kw == "Fields":
            cur.fields_ref = (sum(1 for f in cur.items if not f.prefix), tok[1])
            cur.last_ref = tok[1]
        elif kw == "Mapping":
            cur.mapping = cur.last_ref = tok[1]
        else:
            item = _item(kw, tok, lineno, prefix)
            cur.items.append(item)
            if item.kind == "enum":
                enum = item
    return out


def _item(kw: str, tok: list[str], lineno: int, prefix: str) -> SrField:
    """One bit range of a block: Res0/Res1/Unkn/Raz, Field, or an enum (its values follow)."""
    if kw in ("Res0", "Res1", "Unkn", "Raz"):
        msb, lsb = _bits(tok[1])
        return SrField(kw.lower(), msb, lsb, kw.lower(), line=lineno, prefix=prefix)
    if kw == "Field":
        msb, lsb = _bits(tok[1])
        return SrField(tok[2], msb, lsb, "field", line=lineno, prefix=prefix)
    if kw in ("Enum", "SignedEnum", "UnsignedEnum"):
        msb, lsb = _bits(tok[1])
        return SrField(tok[2], msb, lsb, "enum", signed=kw == "SignedEnum", enum_kind=kw, line=lineno,
                       prefix=prefix)
    raise ValueError(f"line {lineno}: unknown directive {kw!r}")


def parse(text: str) -> dict[str, SrRegister]:
    """Registers by name, ``Fields`` expanded, Prefix blocks (alternative layouts) left out."""
    bl = blocks(text)
    shared = {b.name: [f for f in b.items if not f.prefix] for b in bl if b.kind == "SysregFields"}
    regs: dict[str, SrRegister] = {}
    for b in bl:
        if b.kind != "Sysreg":
            continue
        fields = [f for f in b.items if not f.prefix]
        if b.fields_ref is not None:
            at, name = b.fields_ref
            fields[at:at] = shared.get(name, [])  # some name a layout defined in C only
        regs[b.name] = SrRegister(b.name, b.encoding, fields, b.line, b.mapping)
    return regs


def parse_file(path: str | Path) -> dict[str, SrRegister]:
    return parse(Path(path).read_text())
