"""Extract KVM/arm64's rules for userspace ID-register writes from a Linux source tree.

Usage (``tools/gen_kvm.py`` is the same program)::

    python -m tools.gen_kvm                          # every modelled line, from <src>/linux-<release>/
    python -m tools.gen_kvm /path/to/linux-7.3.4     # one line (its X.Y must have an overlay)

``cpumodel kernels import TREE`` runs the same :func:`generate` on a tree the user brings, with
the overlay of the nearest modelled line (:func:`overlay_for`).

Reads, from the given tree:

* ``arch/arm64/tools/sysreg`` - register encodings, field layouts, enum values and
  RES0 masks (the same table ``gen-sysreg.awk`` turns into ``<REG>_<FIELD>_MASK``
  and friends);
* ``arch/arm64/include/asm/sysreg.h`` and ``asm/cpufeature.h`` - the few
  hand-written constants the expressions below use (``SYS_MIDR_EL1`` ...);
* ``arch/arm64/kernel/cpufeature.c`` - every ``ARM64_FTR_BITS``/``S_ARM64_FTR_BITS``
  line of the ``arm64_ftr_bits`` tables and the ``arm64_ftr_regs[]`` map;
* ``arch/arm64/kvm/sys_regs.c`` (+ ``sys_regs.h``) - the ID-register entries of
  ``sys_reg_descs[]``: each entry is macro-expanded the way the C preprocessor
  would, and its ``.val`` (the writable mask), ``.set_user``, ``.reset`` and
  ``.visibility`` are read off the expansion; the mask expression is evaluated
  with the field positions parsed from that same tree's sysreg file;
* ``tools/testing/selftests/kvm/{arm64,aarch64}/set_id_regs.c`` - the selftest's
  own table of safe/unsafe expectations per field (kept for the tests).

What lives in function bodies (how ``__kvm_read_sanitised_id_reg`` and friends
turn the host's sanitised value into KVM's limit, the extra checks of the
``set_id_*`` handlers, ...) is written by hand in ``data/kvm/overlays/<X.Y>.json``.
Every hand-written entry names the function it comes from and quotes a short
piece of that function (``evidence``); the generator refuses to run when the
quote is not found in that function of that tree, and records the line it was
found on.  So an overlay cannot silently drift from the source it claims.

Writes ``<out>/<X.Y>.json.gz`` and ``<out>/index.json``; the format is described in
``cpumodel/data/kvm/README.md``.  Standard library only.
"""

from __future__ import annotations

import argparse
import copy
import gzip
import hashlib
import json
import operator
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MASK64 = (1 << 64) - 1
DATA_DIR = Path(__file__).resolve().parent.parent / "data" / "kvm"
OVERLAYS = DATA_DIR / "overlays"

SYS_REGS_C = "arch/arm64/kvm/sys_regs.c"
SYS_REGS_H = "arch/arm64/kvm/sys_regs.h"
CPUFEATURE_C = "arch/arm64/kernel/cpufeature.c"
SYSREG_TABLE = "arch/arm64/tools/sysreg"
HEADERS = (
    "arch/arm64/include/asm/sysreg.h",
    "arch/arm64/include/asm/cpufeature.h",
    "arch/arm64/include/asm/cache.h",
)
SELFTESTS = (
    "tools/testing/selftests/kvm/arm64/set_id_regs.c",
    "tools/testing/selftests/kvm/aarch64/set_id_regs.c",
)


class GenError(Exception):
    """A fact could not be extracted: the message says which and where."""


# --------------------------------------------------------------------------- #
# Small C helpers
# --------------------------------------------------------------------------- #

def strip_comments(text: str) -> str:
    """Blank out C comments, keeping newlines so line numbers stay right."""

    def repl(m: re.Match[str]) -> str:
        s = m.group(0)
        if s.startswith("/"):
            return re.sub(r"[^\n]", " ", s)
        return s

    return re.sub(r'//[^\n]*|/\*.*?\*/|"(?:\\.|[^"\\])*"', repl, text, flags=re.S)


def line_of(text: str, pos: int) -> int:
    return text.count("\n", 0, pos) + 1


def matching(text: str, pos: int, open_ch: str, close_ch: str) -> int:
    """Index of the bracket closing the one at ``pos``."""
    depth = 0
    for i in range(pos, len(text)):
        c = text[i]
        if c == open_ch:
            depth += 1
        elif c == close_ch:
            depth -= 1
            if depth == 0:
                return i
    raise GenError(f"unbalanced {open_ch!r} at offset {pos}")


def split_top(text: str, sep: str = ",") -> list[str]:
    """Split on ``sep`` at bracket depth 0."""
    out: list[str] = []
    depth = 0
    cur: list[str] = []
    for c in text:
        if c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
        if c == sep and depth == 0:
            out.append("".join(cur))
            cur = []
        else:
            cur.append(c)
    tail = "".join(cur)
    if tail.strip():
        out.append(tail)
    return [s.strip() for s in out]


TOKEN_RE = re.compile(
    r"\s*(?:(?P<num>0[xX][0-9a-fA-F]+|0[bB][01]+|\d+)[uUlL]*|(?P<id>[A-Za-z_]\w*)"
    r"|(?P<op><<|>>|##|[~!()|&^+\-*/,#{}.=\[\];]|\"(?:\\.|[^\"\\])*\"))"
)


def tokenize(text: str) -> list[str]:
    toks: list[str] = []
    pos = 0
    text = text.strip()
    while pos < len(text):
        m = TOKEN_RE.match(text, pos)
        if not m or m.end() == pos:
            raise GenError(f"cannot tokenise {text[pos:pos + 40]!r}")
        toks.append(m.group("num") or m.group("id") or m.group("op"))
        pos = m.end()
        while pos < len(text) and text[pos].isspace():
            pos += 1
    return toks


class Consts:
    """Resolves C constant names to integers: sysreg-generated names first, then
    object-like ``#define``s from a few headers (evaluated lazily)."""

    def __init__(self) -> None:
        self.values: dict[str, int] = {}
        self.defines: dict[str, str] = {}
        self.tuples: dict[int, tuple[int, int, int, int, int]] = {}

    def add_header(self, text: str) -> None:
        text = strip_comments(text).replace("\\\n", " ")
        for m in re.finditer(r"^[ \t]*#define[ \t]+([A-Za-z_]\w*)[ \t]+([^\n]+)$", text, re.M):
            self.defines.setdefault(m.group(1), m.group(2).strip())

    def get(self, name: str, stack: tuple[str, ...] = ()) -> int:
        if name in self.values:
            return self.values[name]
        if name in self.defines and name not in stack:
            v = evaluate(self.defines[name], self, (*stack, name))
            self.values[name] = v
            return v
        raise GenError(f"unknown constant {name}")


def _genmask(h: int, lo: int) -> int:
    return ((1 << (h + 1)) - 1) & ~((1 << lo) - 1) & MASK64


FUNCS = {
    "GENMASK": _genmask,
    "GENMASK_ULL": _genmask,
    "BIT": lambda n: 1 << n,
    "BIT_ULL": lambda n: 1 << n,
    "UL": lambda x: x,
    "ULL": lambda x: x,
    "_AC": lambda x, _y=0: x,
    "_BITUL": lambda n: 1 << n,
    "_BITULL": lambda n: 1 << n,
}


def sys_reg_enc(op0: int, op1: int, crn: int, crm: int, op2: int) -> int:
    return (op0 << 19) | (op1 << 16) | (crn << 12) | (crm << 8) | (op2 << 5)


def dec_enc(enc: int) -> tuple[int, int, int, int, int]:
    return ((enc >> 19) & 3, (enc >> 16) & 7, (enc >> 12) & 15, (enc >> 8) & 15, (enc >> 5) & 7)


def evaluate(expr: str, consts: Consts, stack: tuple[str, ...] = ()) -> int:
    """Evaluate a C integer constant expression (the subset the kernel uses in
    ID-register masks): literals, names, ~ ! - unary, * / + - << >> & ^ |,
    parentheses and GENMASK/BIT/UL-style macros and ``sys_reg()``."""
    return _CExpr(expr, consts, stack).value()


#: C's binary operators: precedence (higher binds tighter) and what they compute (then masked to 64 bits).
_BINARY: dict[str, tuple[int, Callable[[int, int], int]]] = {
    "*": (10, operator.mul), "/": (10, operator.floordiv), "+": (9, operator.add), "-": (9, operator.sub),
    "<<": (8, operator.lshift), ">>": (8, operator.rshift), "&": (5, operator.and_), "^": (4, operator.xor),
    "|": (3, operator.or_),
}
_UNARY: dict[str, Callable[[int], int]] = {
    "~": lambda v: (~v) & MASK64, "!": lambda v: int(not v), "-": lambda v: (-v) & MASK64, "+": lambda v: v,
}
_CASTS = ("u64", "u32", "u8", "s64", "unsigned", "int")


class _CExpr:
    """A precedence-climbing parser of one C constant expression, evaluating as it goes."""

    def __init__(self, expr: str, consts: Consts, stack: tuple[str, ...]) -> None:
        self.expr = expr
        self.consts = consts
        self.stack = stack
        self.toks = tokenize(expr)
        self.pos = 0

    def value(self) -> int:
        v = self.binary(0)
        if self.pos != len(self.toks):
            raise GenError(f"trailing tokens in {self.expr!r}: {self.toks[self.pos:]}")
        return v

    def peek(self) -> str | None:
        return self.toks[self.pos] if self.pos < len(self.toks) else None

    def take(self, expected: str | None = None) -> str:
        if self.pos >= len(self.toks):
            raise GenError(f"unexpected end of {self.expr!r}")
        t = self.toks[self.pos]
        if expected is not None and t != expected:
            raise GenError(f"expected {expected!r} in {self.expr!r}, got {t!r}")
        self.pos += 1
        return t

    def binary(self, min_prec: int) -> int:
        left = self.primary()
        while True:
            op = self.peek()
            if op not in _BINARY or _BINARY[op][0] < min_prec:
                return left
            self.take()
            prec, fn = _BINARY[op]
            left = fn(left, self.binary(prec + 1)) & MASK64

    def primary(self) -> int:
        t = self.take()
        if t == "(":
            # a cast like (u64) is skipped
            if self.peek() in _CASTS and self.toks[self.pos + 1] == ")":
                self.take()
                self.take(")")
                return self.primary()
            v = self.binary(0)
            self.take(")")
            return v
        if t in _UNARY:
            return _UNARY[t](self.primary())
        if re.match(r"\d", t):
            return _literal(t)
        if self.peek() == "(" and (t in FUNCS or t == "sys_reg"):
            return self.call(t)
        return self.consts.get(t, self.stack)

    def call(self, name: str) -> int:
        """A macro call: GENMASK(), BIT(), ... or sys_reg() (whose operands are remembered)."""
        self.take("(")
        args: list[int] = []
        while self.peek() != ")":
            args.append(self.binary(0))
            if self.peek() == ",":
                self.take(",")
        self.take(")")
        if name == "sys_reg":
            enc = sys_reg_enc(*args)
            self.consts.tuples[enc] = tuple(args)  # type: ignore[assignment]
            return enc
        return FUNCS[name](*args) & MASK64


def _literal(t: str) -> int:
    """A C integer literal: hex, binary, octal (leading 0) or decimal."""
    if t.lower().startswith("0x"):
        return int(t, 16)
    if t.lower().startswith("0b"):
        return int(t[2:], 2)
    return int(t, 8) if len(t) > 1 and t.startswith("0") else int(t)


# --------------------------------------------------------------------------- #
# arch/arm64/tools/sysreg
# --------------------------------------------------------------------------- #

@dataclass
class SrField:
    name: str
    msb: int
    lsb: int
    kind: str  # Field, Enum, SignedEnum, UnsignedEnum
    line: int
    values: dict[str, int] = field(default_factory=dict)

    @property
    def width(self) -> int:
        return self.msb - self.lsb + 1

    @property
    def mask(self) -> int:
        return _genmask(self.msb, self.lsb)


@dataclass
class SrReg:
    name: str
    encoding: tuple[int, int, int, int, int] | None
    line: int
    fields: list[SrField] = field(default_factory=list)
    res0: int = 0
    res1: int = 0
    fields_ref: str | None = None
    source: str = ""  # set when the layout is not from this tree's sysreg (see fallback_layouts)


def parse_sysreg(text: str, consts: Consts) -> dict[str, SrReg]:
    """The registers of the sysreg table (:func:`cpumodel.kvm.sysreg.blocks`, the one reader) with
    the constants gen-sysreg.awk would define from it: ``<REG>_<FIELD>[_MASK|_SHIFT|_WIDTH]``,
    ``<REG>_<FIELD>_<VALUE>``, ``<REG>_RES0/RES1`` and ``SYS_<REG>``."""
    from cpumodel.kvm import sysreg

    kinds = {"Enum": "Enum", "SignedEnum": "SignedEnum", "UnsignedEnum": "UnsignedEnum"}
    regs: dict[str, SrReg] = {}
    for b in sysreg.blocks(text):
        cur = SrReg(b.name, b.encoding, b.line, fields_ref=b.last_ref)
        regs[b.name] = cur
        for it in b.items:
            if it.kind in ("res0", "res1", "unkn", "raz"):
                if it.prefix:
                    continue
                if it.kind == "res0":
                    cur.res0 |= _genmask(it.msb, it.lsb)
                elif it.kind == "res1":
                    cur.res1 |= _genmask(it.msb, it.lsb)
                continue
            f = SrField(it.name, it.msb, it.lsb, kinds.get(it.enum_kind, "Field"), it.line)
            base = f"{it.prefix}{cur.name}_{f.name}"
            consts.values[base] = f.mask
            consts.values[base + "_MASK"] = f.mask
            consts.values[base + "_SHIFT"] = it.lsb
            consts.values[base + "_WIDTH"] = f.width
            if not it.prefix:
                cur.fields.append(f)
            for vname, v in it.names:
                f.values[vname] = v
                consts.values[f"{base}_{vname}"] = v
        consts.values[f"{cur.name}_RES0"] = cur.res0
        consts.values[f"{cur.name}_RES1"] = cur.res1
        if cur.encoding:
            consts.values[f"SYS_{cur.name}"] = sys_reg_enc(*cur.encoding)
            consts.tuples[sys_reg_enc(*cur.encoding)] = cur.encoding
    # registers that borrow a SysregFields layout
    for r in regs.values():
        if r.fields_ref and r.fields_ref in regs and not r.fields:
            src = regs[r.fields_ref]
            r.fields = src.fields
            r.res0 = src.res0
            consts.values[f"{r.name}_RES0"] = r.res0
    return regs


def fallback_layouts(descs: list[Any], by_enc: dict[int, SrReg]) -> dict[int, SrReg]:
    """Layouts of the feature ID registers of ``sys_reg_descs[]`` that this tree's sysreg table
    lacks (before 6.2 the AArch32 ID registers had only ``#define`` shifts in asm/sysreg.h), taken
    from cpumodel's register database (Linux 7.3.4's sysreg plus Arm ARM additions): the field
    layout of an ID register is architectural, and only names fields in messages; the kernel's
    checks of such a tree never depend on it."""
    db_path = DATA_DIR.parent / "registers.json"
    db = json.loads(db_path.read_text())["registers"]
    by_db_enc = {sys_reg_enc(*r["enc"]): (name, r) for name, r in db.items() if r.get("enc")}
    out: dict[int, SrReg] = {}
    for d in descs:
        if not is_feature_id_reg(d.encoding):
            continue
        e = sys_reg_enc(*d.encoding)
        if e in by_enc or e not in by_db_enc:
            continue
        name, r = by_db_enc[e]
        sr = SrReg(name, tuple(r["enc"]), int(r.get("line", 0)),  # type: ignore[arg-type]
                   source=f"cpumodel/data/registers.json {name} (this tree's {SYSREG_TABLE} has no {name})")
        for f in r["fields"]:
            if f["kind"] == "res0":
                sr.res0 |= _genmask(f["msb"], f["lsb"])
            elif f["kind"] in ("field", "enum"):
                kind = "Field" if f["kind"] == "field" else \
                    {"signed": "SignedEnum", "unsigned": "UnsignedEnum"}.get(f.get("order") or "", "Enum")
                sr.fields.append(SrField(f["name"], f["msb"], f["lsb"], kind, int(f.get("line", 0)),
                                         {v: int(k) for k, v in (f.get("values") or {}).items()}))
        out[e] = sr
    return out


# --------------------------------------------------------------------------- #
# Function bodies (for the overlay's evidence) and simple macro expansion
# --------------------------------------------------------------------------- #

@dataclass
class CFunc:
    name: str
    start: int  # line of the signature
    end: int
    body: str   # comment-stripped text
    body_offset: int  # offset of body in the stripped file


def find_functions(stripped: str) -> dict[str, CFunc]:
    funcs: dict[str, CFunc] = {}
    for m in re.finditer(r"^(?:static\s+)?(?:inline\s+)?[A-Za-z_][\w\s\*]*?\b([A-Za-z_]\w*)\s*\(([^;{]*?)\)\s*\{",
                         stripped, re.M | re.S):
        name = m.group(1)
        if name in ("if", "while", "for", "switch"):
            continue
        open_brace = m.end() - 1
        try:
            close = matching(stripped, open_brace, "{", "}")
        except GenError:
            continue
        if name not in funcs:
            funcs[name] = CFunc(name, line_of(stripped, m.start()), line_of(stripped, close),
                                stripped[m.start():close + 1], m.start())
    # function-like macros too (ID_REG_LIMIT_FIELD_ENUM ...)
    for m in re.finditer(r"^#define\s+([A-Za-z_]\w*)\(", stripped, re.M):
        end = m.end()
        while True:
            nl = stripped.find("\n", end)
            if nl < 0 or stripped[nl - 1] != "\\":
                break
            end = nl + 1
        funcs.setdefault(m.group(1), CFunc(m.group(1), line_of(stripped, m.start()),
                                           line_of(stripped, nl if nl > 0 else end),
                                           stripped[m.start():nl], m.start()))
    return funcs


def quote_re(q: str) -> re.Pattern[str]:
    """A quote matches the code whatever its whitespace."""
    parts = [re.escape(p) for p in re.findall(r"\w+|[^\w\s]", q)]
    return re.compile(r"\s*".join(parts))


def norm_ws(s: str) -> str:
    return re.sub(r"\s+", " ", s).strip()


@dataclass
class Macro:
    params: list[str] | None
    body: list[str]


def collect_macros(stripped: str) -> dict[str, Macro]:
    text = stripped.replace("\\\n", " ")
    macros: dict[str, Macro] = {}
    for m in re.finditer(r"^[ \t]*#define[ \t]+([A-Za-z_]\w*)(\(([^)]*)\))?[ \t]*([^\n]*)$", text, re.M):
        params = None if m.group(2) is None else [p.strip() for p in m.group(3).split(",") if p.strip()]
        try:
            body = tokenize(m.group(4))
        except GenError:
            continue
        macros[m.group(1)] = Macro(params, body)
    return macros


def expand(tokens: list[str], macros: dict[str, Macro], keep: set[str],
           active: frozenset[str] = frozenset()) -> list[str]:
    out: list[str] = []
    i = 0
    while i < len(tokens):
        t = tokens[i]
        mac = macros.get(t)
        if mac is None or t in keep or t in active:
            out.append(t)
            i += 1
            continue
        if mac.params is None:
            out.extend(expand(mac.body, macros, keep, active | {t}))
            i += 1
            continue
        if i + 1 >= len(tokens) or tokens[i + 1] != "(":
            out.append(t)
            i += 1
            continue
        args, j = _macro_args(tokens, i + 1)
        if mac.params == [] and args == [[]]:
            args = []
        pasted = _paste(_substitute(mac, dict(zip(mac.params, args, strict=False))))
        out.extend(expand(pasted, macros, keep, active | {t}))
        i = j + 1
    return out


def _macro_args(tokens: list[str], j: int) -> tuple[list[list[str]], int]:
    """The arguments of a macro call whose "(" is ``tokens[j]``, and the index of its ")"."""
    depth = 0
    args: list[list[str]] = [[]]
    while True:
        tok = tokens[j]
        if tok in "([{":
            depth += 1
            if depth > 1:
                args[-1].append(tok)
        elif tok in ")]}":
            depth -= 1
            if depth == 0:
                return args, j
            args[-1].append(tok)
        elif tok == "," and depth == 1:
            args.append([])
        else:
            args[-1].append(tok)
        j += 1


def _substitute(mac: Macro, binding: dict[str, list[str]]) -> list[str]:
    """The macro's body with its parameters replaced (``#param`` as a string)."""
    body: list[str] = []
    k = 0
    while k < len(mac.body):
        bt = mac.body[k]
        if bt == "#" and k + 1 < len(mac.body) and mac.body[k + 1] in binding:
            body.append('"' + "".join(binding[mac.body[k + 1]]) + '"')
            k += 2
            continue
        if bt in binding:
            body.extend(binding[bt])
        else:
            body.append(bt)
        k += 1
    return body


def _paste(body: list[str]) -> list[str]:
    """Token pasting: ``a ## b`` becomes ``ab``."""
    pasted: list[str] = []
    k = 0
    while k < len(body):
        if body[k] == "##":
            pasted[-1] = pasted[-1] + body[k + 1]
            k += 2
        else:
            pasted.append(body[k])
            k += 1
    return pasted


def detok(tokens: list[str]) -> str:
    s = " ".join(tokens)
    s = re.sub(r"\s*([(),])\s*", r"\1", s)
    s = re.sub(r"(^|[\s,{(])\.\s+(\w)", r"\1.\2", s)
    return s.replace(",", ", ")


# --------------------------------------------------------------------------- #
# cpufeature.c
# --------------------------------------------------------------------------- #

@dataclass
class FtrBits:
    signed: bool
    visible: Any
    strict: bool
    type: str
    shift: int
    width: int
    safe_val: int
    line: int
    text: str


FtrTables = dict[str, tuple[int, list[FtrBits]]]


def parse_cpufeature(text: str, consts: Consts) -> tuple[FtrTables, dict[int, tuple[str, int]]]:
    stripped = strip_comments(text)
    tables: dict[str, tuple[int, list[FtrBits]]] = {}
    for m in re.finditer(r"(?:static\s+)?const\s+struct\s+arm64_ftr_bits\s+(\w+)\[\]\s*=\s*\{", stripped):
        start = m.end() - 1
        end = matching(stripped, start, "{", "}")
        body = stripped[start + 1:end]
        bits: list[FtrBits] = []
        for e in re.finditer(r"\b(S_)?ARM64_FTR_BITS\s*\(", body):
            open_p = e.end() - 1
            close_p = matching(body, open_p, "(", ")")
            args = split_top(body[open_p + 1:close_p])
            if len(args) != 6:
                raise GenError(f"{CPUFEATURE_C}: odd ARM64_FTR_BITS at {line_of(stripped, start + e.start())}")
            vis_s, strict_s, type_s, shift_s, width_s, safe_s = args
            vm = re.fullmatch(r"FTR_VISIBLE_IF_IS_ENABLED\((\w+)\)", vis_s)
            visible: Any = vis_s == "FTR_VISIBLE" if not vm else f"if {vm.group(1)}"
            if vis_s not in ("FTR_VISIBLE", "FTR_HIDDEN") and not vm:
                raise GenError(f"unknown visibility {vis_s}")
            if type_s not in ("FTR_EXACT", "FTR_LOWER_SAFE", "FTR_HIGHER_SAFE", "FTR_HIGHER_OR_ZERO_SAFE"):
                raise GenError(f"unknown ftr type {type_s}")
            lineno = line_of(stripped, start + 1 + e.start())
            bits.append(FtrBits(
                signed=bool(e.group(1)), visible=visible, strict=strict_s == "FTR_STRICT",
                type=type_s[len("FTR_"):], shift=evaluate(shift_s, consts), width=evaluate(width_s, consts),
                safe_val=evaluate(safe_s, consts), line=lineno,
                text=norm_ws(body[e.start():close_p + 1])))
        tables[m.group(1)] = (line_of(stripped, m.start()), bits)
    # struct arm64_ftr_reg NAME = { .ftr_bits = TABLE }
    named: dict[str, str] = {}
    for m in re.finditer(r"struct\s+arm64_ftr_reg\s+(\w+)\s*=\s*\{([^}]*)\}", stripped):
        fm = re.search(r"\.ftr_bits\s*=\s*(\w+)", m.group(2))
        if fm:
            named[m.group(1)] = fm.group(1)
    regmap: dict[int, tuple[str, int]] = {}
    m = re.search(r"\}\s*arm64_ftr_regs\[\]\s*=\s*\{", stripped)
    if not m:
        raise GenError(f"{CPUFEATURE_C}: arm64_ftr_regs[] not found")
    start = m.end() - 1
    body = stripped[start + 1:matching(stripped, start, "{", "}")]
    for e in re.finditer(r"ARM64_FTR_REG(?:_OVERRIDE)?\s*\(\s*(\w+)\s*,\s*(\w+)|\{\s*(\w+)\s*,\s*&(\w+)\s*\}", body):
        if e.group(1):
            enc_name, table = e.group(1), e.group(2)
        else:
            enc_name, table = e.group(3), named.get(e.group(4), "")
        try:
            enc = consts.get(enc_name)
        except GenError:
            continue
        regmap[enc] = (table, line_of(stripped, start + 1 + e.start()))
    return tables, regmap


# --------------------------------------------------------------------------- #
# sys_regs.c: sys_reg_descs[]
# --------------------------------------------------------------------------- #

DESC_POSITIONAL = ["access", "reset", "reg", "val", "get_user", "set_user", "visibility"]


@dataclass
class Desc:
    name: str
    encoding: tuple[int, int, int, int, int]
    line: int
    macro: str
    text: str
    fields: dict[str, str]


def parse_descs(text: str, header: str, consts: Consts) -> list[Desc]:
    stripped = strip_comments(text)
    macros = collect_macros(strip_comments(header))
    macros.update(collect_macros(stripped))
    m = re.search(r"static\s+const\s+struct\s+sys_reg_desc\s+sys_reg_descs\[\]\s*=\s*\{", stripped)
    if not m:
        raise GenError(f"{SYS_REGS_C}: sys_reg_descs[] not found")
    start = m.end() - 1
    end = matching(stripped, start, "{", "}")
    body = stripped[start + 1:end]
    descs: list[Desc] = []
    offset = 0
    for part in split_top(body + ","):
        # find the part's position for its line number
        idx = body.find(part, offset)
        if idx >= 0:
            offset = idx + len(part)
        lineno = line_of(stripped, start + 1 + max(idx, 0))
        if not part:
            continue
        mm = re.match(r"([A-Za-z_]\w*)\s*\(", part)
        macro = mm.group(1) if mm else "{...}"
        toks = expand(tokenize(part), macros, keep={"SYS_DESC", "sys_reg_Op0"})
        if not toks or toks[0] != "{" or toks[-1] != "}":
            continue
        inner = detok(toks[1:-1])
        items = split_top(inner)
        fields: dict[str, str] = {}
        positional = 0
        enc: list[int] = [0, 0, 0, 0, 0]
        name = ""
        for it in items:
            sd = re.fullmatch(r"SYS_DESC\((\w+)\)", it)
            if sd:
                try:
                    e = consts.get(sd.group(1))
                except GenError:
                    # not an ID register (e.g. an encoding built by a helper macro)
                    e = 0
                enc = list(dec_enc(e))
                name = sd.group(1)[len("SYS_"):] if sd.group(1).startswith("SYS_") else sd.group(1)
                positional = 0
                continue
            dm = re.fullmatch(r"\.(\w+)\s*=\s*(.+)", it, re.S)
            if dm:
                key, val = dm.group(1), dm.group(2).strip()
                if key in ("Op0", "Op1", "CRn", "CRm", "Op2"):
                    try:
                        enc[["Op0", "Op1", "CRn", "CRm", "Op2"].index(key)] = evaluate(val, consts)
                    except GenError:
                        enc = [0, 7, 15, 15, 7]  # unresolvable: certainly not an ID register
                    positional = 0
                elif key == "name":
                    name = val.strip('"')
                else:
                    fields[key] = val
                    if key in DESC_POSITIONAL:
                        positional = DESC_POSITIONAL.index(key) + 1
                continue
            if positional < len(DESC_POSITIONAL):
                fields[DESC_POSITIONAL[positional]] = it
                positional += 1
        descs.append(Desc(name, tuple(enc), lineno, macro, norm_ws(part), fields))  # type: ignore[arg-type]
    return descs


def is_feature_id_reg(enc: tuple[int, int, int, int, int]) -> bool:
    op0, op1, crn, crm, _ = enc
    return op0 == 3 and (op1 < 2 or op1 == 3) and crn == 0 and crm <= 7


def is_aa32_id_reg(enc: tuple[int, int, int, int, int]) -> bool:
    op0, op1, crn, crm, _ = enc
    return op0 == 3 and op1 == 0 and crn == 0 and 1 <= crm <= 3


# --------------------------------------------------------------------------- #
# set_id_regs.c selftest tables
# --------------------------------------------------------------------------- #

def parse_selftest(text: str, consts: Consts) -> dict[str, Any]:
    stripped = strip_comments(text)
    tables: dict[str, list[dict[str, Any]]] = {}
    for m in re.finditer(r"static\s+const\s+struct\s+reg_ftr_bits\s+(\w+)\[\]\s*=\s*\{", stripped):
        start = m.end() - 1
        end = matching(stripped, start, "{", "}")
        body = stripped[start + 1:end]
        rows = []
        for e in re.finditer(r"\b(S_)?REG_FTR_BITS(_MUTABLE)?\s*\(", body):
            open_p = e.end() - 1
            close_p = matching(body, open_p, "(", ")")
            typ, reg, fld, safe = split_top(body[open_p + 1:close_p])
            rows.append({
                "reg": reg, "field": fld, "signed": bool(e.group(1)), "type": typ[len("FTR_"):],
                "safe_val": evaluate(safe, consts), "mutable": bool(e.group(2)),
                "line": line_of(stripped, start + 1 + e.start()),
            })
        tables[m.group(1)] = rows
    regs: list[str] = []
    m = re.search(r"test_regs\[\]\s*=\s*\{", stripped)
    if m:
        start = m.end() - 1
        body = stripped[start + 1:matching(stripped, start, "{", "}")]
        for e in re.finditer(r"TEST_REG\(\s*SYS_(\w+)\s*,\s*(\w+)\s*\)", body):
            regs.append(e.group(1))
            for row in tables.get(e.group(2), []):
                row["table"] = e.group(2)
    out_rows = [row for t in tables.values() for row in t if "table" in row]
    return {"registers": regs, "fields": out_rows}


# --------------------------------------------------------------------------- #
# Overlay
# --------------------------------------------------------------------------- #

def load_overlay(version: str) -> dict[str, Any]:
    path = OVERLAYS / f"{version}.json"
    if not path.exists():
        raise GenError(f"no overlay {path}: write one (see cpumodel/data/kvm/overlays/README.md)")
    data = json.loads(path.read_text())
    base = data.pop("extends", None)
    if base:
        parent = load_overlay(base)
        for key, val in data.items():
            if isinstance(val, dict) and isinstance(parent.get(key), dict):
                merged = dict(parent[key])
                merged.update(val)
                # null removes an inherited entry, except for feature aliases where
                # null means "accepted and ignored by this kernel"
                parent[key] = merged if key == "feature_aliases" else {k: v for k, v in merged.items() if v is not None}
            else:
                parent[key] = val
        data = parent
    return data


class SourceIndex:
    """Finds functions and quotes in the tree; renders ``source`` strings."""

    def __init__(self, root: Path, full_version: str) -> None:
        self.root = root
        self.version = full_version
        self.cache: dict[str, tuple[str, dict[str, CFunc]]] = {}

    def file(self, rel: str) -> tuple[str, dict[str, CFunc]]:
        if rel not in self.cache:
            path = self.root / rel
            if not path.exists():
                raise GenError(f"missing {rel} in {self.root}")
            stripped = strip_comments(path.read_text(errors="replace"))
            self.cache[rel] = (stripped, find_functions(stripped))
        return self.cache[rel]

    def fmt(self, rel: str, line: int, what: str = "") -> str:
        return f"{rel}:{line}{' ' + what if what else ''} [Linux {self.version}]"

    def resolve(self, src: dict[str, Any], where: str) -> str:
        rel = src.get("file", SYS_REGS_C)
        stripped, funcs = self.file(rel)
        fn = src.get("function")
        evidence = src.get("evidence")
        quotes = [] if not evidence else (evidence if isinstance(evidence, list) else [evidence])
        if fn:
            if fn not in funcs:
                raise GenError(f"{where}: function {fn}() not found in {rel} of Linux {self.version}")
            f = funcs[fn]
            line = f.start
            for i, q in enumerate(quotes):
                m = quote_re(q).search(f.body)
                if m is None:
                    raise GenError(f"{where}: evidence {q!r} not found in {fn}() of {rel} (Linux {self.version})")
                if i == 0:
                    line = f.start + f.body.count("\n", 0, m.start())
            return self.fmt(rel, line, f"{fn}()")
        if quotes:
            line = 0
            for i, q in enumerate(quotes):
                m = quote_re(q).search(stripped)
                if m is None:
                    raise GenError(f"{where}: evidence {q!r} not found in {rel} (Linux {self.version})")
                if i == 0:
                    line = line_of(stripped, m.start())
            return self.fmt(rel, line)
        raise GenError(f"{where}: a source needs a function or an evidence quote")


def resolve_sources(obj: Any, idx: SourceIndex, where: str) -> Any:
    """Replace every ``{"source": {...}}`` object in the overlay with a string."""
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            if k == "source" and isinstance(v, dict):
                out[k] = idx.resolve(v, where)
            else:
                out[k] = resolve_sources(v, idx, f"{where}.{k}")
        return out
    if isinstance(obj, list):
        return [resolve_sources(v, idx, f"{where}[{i}]") for i, v in enumerate(obj)]
    return obj


# --------------------------------------------------------------------------- #
# Assemble
# --------------------------------------------------------------------------- #

def hexs(v: int) -> str:
    return f"0x{v:016x}"


def read_version(root: Path) -> tuple[str, str]:
    mk = (root / "Makefile").read_text()
    vals = {k: re.search(rf"^{k}\s*=\s*(\S*)", mk, re.M) for k in ("VERSION", "PATCHLEVEL", "SUBLEVEL")}
    v, p, s = (vals[k].group(1) if vals[k] else "" for k in ("VERSION", "PATCHLEVEL", "SUBLEVEL"))  # type: ignore[union-attr]
    return f"{v}.{p}", f"{v}.{p}.{s}"


def layout_of(reg: SrReg | None) -> list[dict[str, Any]]:
    if reg is None:
        return []
    out = []
    for f in sorted(reg.fields, key=lambda f: -f.lsb):
        d: dict[str, Any] = {"name": f.name, "shift": f.lsb, "width": f.width}
        if f.kind == "SignedEnum":
            d["signed"] = True
        if f.values:
            d["values"] = dict(sorted(f.values.items(), key=lambda kv: kv[1]))
        out.append(d)
    return out


ENUM_KEYS = ("value", "max", "eq", "lt", "to", "user_eq")


def resolve_enum_names(reg_name: str, reg: dict[str, Any]) -> None:
    """Overlay steps may name enum values (``"max": "V8P8"``); turn them into
    numbers using the register's own sysreg layout, so typos fail loudly."""
    layout = {f["name"]: f for f in reg.get("layout", [])}

    def num(field_name: str, v: Any) -> Any:
        if not isinstance(v, str):
            return v
        f = layout.get(field_name)
        if f is None or v not in f.get("values", {}):
            raise GenError(f"{reg_name}.{field_name}: no enum value {v!r} in the sysreg table")
        return f["values"][v]

    for step in reg["kvm_limit"]["steps"] + reg["set_handler"]["steps"]:
        fld = step.get("field")
        for f in step.get("fields", []) + ([fld] if fld else []):
            if f not in layout:
                raise GenError(f"{reg_name}: overlay names unknown field {f}")
        if fld:
            for k in ENUM_KEYS:
                if k in step:
                    step[k] = num(fld, step[k])
            if "in" in step:
                step["in"] = [num(fld, v) for v in step["in"]]
        if "host_eq" in step:
            step["host_eq"] = {k: num(k, v) for k, v in step["host_eq"].items()}


def overlay_for(version: str) -> str:
    """The overlay a tree of ``version`` is read with: its own line's when there is one,
    else the nearest older modelled line's (the oldest for a tree older than every line)."""
    have = [p.stem for p in OVERLAYS.glob("*.json") if p.stem != "lines"]
    mm = ".".join(version.split(".")[:2])
    if mm in have:
        return mm
    from cpumodel.kvm.lines import nearest

    best = nearest(version, have)
    if best is None:
        raise GenError("no overlays")
    return best


def generate(root: Path, overlay_line: str | None = None) -> dict[str, Any]:
    """The rule set of the tree at ``root`` (raises :class:`GenError` naming what is missing)."""
    if not (root / "Makefile").exists() or not (root / SYS_REGS_C).exists():
        raise GenError(f"{root} is not a Linux source tree (needs Makefile and {SYS_REGS_C})")
    major_minor, full = read_version(root)
    overlay_line = overlay_line or major_minor
    overlay = load_overlay(overlay_line)
    idx = SourceIndex(root, full)
    consts = Consts()
    for h in HEADERS:
        p = root / h
        if p.exists():
            consts.add_header(p.read_text(errors="replace"))
    sysreg = parse_sysreg((root / SYSREG_TABLE).read_text(), consts)
    tables, regmap = parse_cpufeature((root / CPUFEATURE_C).read_text(), consts)
    descs = parse_descs((root / SYS_REGS_C).read_text(), (root / SYS_REGS_H).read_text(), consts)
    by_enc = {sys_reg_enc(*r.encoding): r for r in sysreg.values() if r.encoding}
    for enc_i, sr in fallback_layouts(descs, by_enc).items():
        by_enc[enc_i] = sr
    registers: dict[str, Any] = {}
    other: list[str] = []
    for d in descs:
        if not is_feature_id_reg(d.encoding):
            if d.name:
                other.append(d.name)
            continue
        name, entry = _desc_entry(d, by_enc.get(sys_reg_enc(*d.encoding)), consts, tables, regmap, idx)
        registers[name] = entry

    # ---- overlay facts, each checked against the tree -------------------- #
    ov = resolve_sources(overlay, idx, f"overlay {overlay_line}")
    _overlay_registers(ov, registers, by_enc)
    for name, r in registers.items():
        _attach_handlers(ov, name, r)
    _check_first_run(ov, registers)

    out: dict[str, Any] = {
        "format": 1,
        "kernel": major_minor,
        "kernel_full": full,
        "source_package": overlay.get("source_package", ""),
        "generated_by": "tools/gen_kvm.py",
        "registers": dict(sorted(registers.items(), key=lambda kv: tuple(kv[1]["encoding"]))),
        "other_registers": sorted(set(other)),
    }
    for key in ("conditions", "derived", "visibility_rules", "check_features", "first_run", "vcpu_features",
                "order", "errnos", "feature_aliases", "notes", "writable_id_regs"):
        if key in ov:
            out[key] = ov[key]
    expectations = _selftest_expectations(root, consts, idx)
    if expectations is not None:
        out["selftest_expectations"] = expectations
    return out


def _nonnull(text: str | None) -> str | None:
    """A C initialiser's function name, or None for none / NULL."""
    return text.strip() if text and text.strip() != "NULL" else None


def _desc_entry(d: Any, srreg: Any, consts: Consts, tables: dict[str, Any], regmap: dict[int, Any],
                idx: SourceIndex) -> tuple[str, dict[str, Any]]:
    """One feature ID register of sys_reg_descs[]: its name and entry (mask, handlers, layout, ftr_bits)."""
    name = d.name
    if not re.fullmatch(r"[A-Z][A-Za-z0-9_]*", name) or name.startswith("S3_"):
        name = "S{}_{}_C{}_C{}_{}".format(*d.encoding)
    mask_expr = d.fields.get("val", "0")
    try:
        mask = evaluate(mask_expr, consts)
    except GenError as exc:
        raise GenError(f"{SYS_REGS_C}:{d.line}: cannot evaluate mask of {name}: {exc}") from exc
    set_user = _nonnull(d.fields.get("set_user"))
    entry: dict[str, Any] = {
        "encoding": list(d.encoding),
        "desc": {"macro": d.macro, "text": d.text, "source": idx.fmt(SYS_REGS_C, d.line, "sys_reg_descs[]")},
        "writable_mask": hexs(mask),
        "writable_mask_expr": norm_ws(mask_expr),
        "set_user": set_user,
        "reset": _nonnull(d.fields.get("reset")),
        "visibility": _nonnull(d.fields.get("visibility", "")),
        "reported_in_writable_masks": bool(set_user) and mask != 0,
        "aa32": is_aa32_id_reg(d.encoding),
    }
    if srreg is not None:
        entry["layout"] = layout_of(srreg)
        entry["res0"] = hexs(srreg.res0)
        entry["layout_source"] = srreg.source or idx.fmt(SYSREG_TABLE, srreg.line, f"Sysreg {srreg.name}")
    ftr = regmap.get(sys_reg_enc(*d.encoding))
    if ftr is not None and ftr[0] in tables:
        tline, bits = tables[ftr[0]]
        entry["ftr_table"] = ftr[0]
        entry["ftr_table_source"] = idx.fmt(CPUFEATURE_C, tline, f"{ftr[0]}[]")
        entry["ftr_reg_source"] = idx.fmt(CPUFEATURE_C, ftr[1], "arm64_ftr_regs[]")
        entry["fields"] = [_ftr_field(b, srreg, mask, idx) for b in bits]
    elif ftr is None:
        entry["fields"] = None  # no arm64_ftr_reg: arm64_check_features() gives -EINVAL
    return name, entry


def _ftr_field(b: Any, srreg: Any, mask: int, idx: SourceIndex) -> dict[str, Any]:
    """One arm64_ftr_bits entry, named from the sysreg layout; checked when the writable mask covers it."""
    fmask = _genmask(b.shift + b.width - 1, b.shift)
    fname = None
    if srreg is not None:
        for f in srreg.fields:
            if f.lsb == b.shift and f.width == b.width:
                fname = f.name
        if fname is None and fmask & srreg.res1 == fmask:
            fname = f"RES1_{b.shift}"
    return {
        "name": fname or f"bits{b.shift + b.width - 1}_{b.shift}",
        "shift": b.shift, "width": b.width, "signed": b.signed, "policy": b.type,
        "safe_val": b.safe_val, "visible": b.visible, "strict": b.strict,
        "checked": (fmask & mask) == fmask,
        "source": idx.fmt(CPUFEATURE_C, b.line, b.text),
    }


def _overlay_registers(ov: dict[str, Any], registers: dict[str, Any], by_enc: dict[int, Any]) -> None:
    """The overlay's extra registers and ftr policy overrides; its kvm_limit names known registers."""
    for name, extra in ov.get("extra_registers", {}).items():
        extra = dict(extra)
        replace = extra.pop("replace", False)  # found before sys_reg_descs[] (invariant_sys_regs[] < 6.7)
        sr = by_enc.get(sys_reg_enc(*extra["encoding"]))
        if sr is not None:
            extra.setdefault("layout", layout_of(sr))
        if replace:
            if name not in registers:
                raise GenError(f"overlay extra_registers: {name} replaces nothing in sys_reg_descs[]")
            registers[name] = extra
        else:
            registers.setdefault(name, extra)
    for reg in ov.get("kvm_limit", {}):
        if reg != "*" and reg not in registers:
            raise GenError(f"overlay kvm_limit names unknown register {reg}")
    for ovr in ov.get("ftr_policy_overrides", []):
        hit = [f for f in registers[ovr["reg"]].get("fields") or [] if f["name"] == ovr["field"]]
        if not hit:
            raise GenError(f"policy override for unknown field {ovr['reg']}.{ovr['field']}")
        hit[0]["kvm_policy"] = ovr["policy"]
        hit[0]["kvm_policy_source"] = ovr["source"]


def _attach_handlers(ov: dict[str, Any], name: str, r: dict[str, Any]) -> None:
    """Register ``name``'s KVM limit and set_user handler from the overlay's descriptions of its
    reset/set_user/visibility functions (a function the overlay does not describe is an error)."""
    limit_fns = ov.get("limit_functions", {})
    set_handlers = ov.get("set_handlers", {})
    per_reg_limit = ov.get("kvm_limit", {})
    reset = r.get("reset") or ""
    if not reset and r.get("set_user") in ov.get("limit_for_set_user", {}):
        reset = ov["limit_for_set_user"][r["set_user"]]  # < 6.7: no stored value, read_id_reg() each time
    if reset not in limit_fns:
        raise GenError(f"{name}: reset function {reset or 'NULL'}() not described in the overlay's limit_functions")
    steps = list(per_reg_limit.get(name, []))
    if reset == "kvm_read_sanitised_id_reg":
        steps += per_reg_limit.get("*", [])
    r["kvm_limit"] = copy.deepcopy({"function": reset or None, **limit_fns[reset], "steps": steps})
    handler = r.get("set_user") or ""
    if handler not in set_handlers:
        raise GenError(f"{name}: set_user {handler or 'NULL'}() not described in the overlay's set_handlers")
    r["set_handler"] = copy.deepcopy({"function": handler or None, **set_handlers[handler]})
    vis = r.get("visibility")
    if vis and vis not in ov.get("visibility_rules", {}):
        raise GenError(f"{name}: visibility function {vis}() not described in the overlay")
    resolve_enum_names(name, r)


def _check_first_run(ov: dict[str, Any], registers: dict[str, Any]) -> None:
    """Every field the overlay's first_run steps name is in its register's layout."""
    for step in ov.get("first_run", []):
        if "reg" in step:
            lay = {f["name"] for f in registers[step["reg"]].get("layout", [])}
            for f in step.get("fields", []):
                if f not in lay:
                    raise GenError(f"first_run: unknown field {step['reg']}.{f}")


def _selftest_expectations(root: Path, consts: Consts, idx: SourceIndex) -> dict[str, Any] | None:
    """The first KVM selftest in SELFTESTS the tree has, parsed (its rows with their sources)."""
    for rel in SELFTESTS:
        p = root / rel
        if p.exists():
            st = parse_selftest(p.read_text(), consts)
            for row in st["fields"]:
                row["source"] = idx.fmt(rel, row.pop("line"), row.pop("table") + "[]")
            return {"file": rel, **st}
    return None


SET_OPS = {"set_id_reg", "rewrite", "reject", "ignore_if_host_equal", "replace_from_host", "imp_id_reg", "invariant",
           "clidr", "store", "equal_limit", "nv_doublelock_fixup", "nv_tgran2_check"}
LIMIT_OPS = {"clear", "keep", "set", "set_derived", "cap", "nv_limit"}


def validate(data: dict[str, Any]) -> None:
    """What the model needs of a rule set: every step an op it implements, every condition named
    in a step defined, every derived value defined (raises :class:`GenError`)."""
    conds = set(data.get("conditions", {}))
    derived = set(data.get("derived", {}))

    def check(where: str, st: dict[str, Any]) -> None:
        for k in ("if", "unless"):
            for n in _condition_names(st.get(k)):
                if n not in conds:
                    raise GenError(f"{where}: condition {n!r} is not defined")
        if st.get("derived") and st["derived"] not in derived:
            raise GenError(f"{where}: derived value {st['derived']!r} is not defined")

    for name, r in data["registers"].items():
        for st in r["kvm_limit"]["steps"]:
            if st["op"] not in LIMIT_OPS:
                raise GenError(f"{name}: unknown limit op {st['op']!r}")
            check(f"{name} limit", st)
        for st in r["set_handler"]["steps"]:
            if st["op"] not in SET_OPS:
                raise GenError(f"{name}: unknown set op {st['op']!r}")
            check(f"{name} {r['set_handler']['function']}()", st)
    for st in data.get("first_run", []):
        check("first_run", st)


def _condition_names(c: Any) -> list[str]:
    """The named conditions a step's ``if``/``unless`` uses (through all/any/not)."""
    if c is None:
        return []
    if isinstance(c, str):
        return [c]
    if isinstance(c, list):
        return [n for x in c for n in _condition_names(x)]
    if isinstance(c, dict):
        return [n for k in ("all", "any", "not") if k in c for n in _condition_names(c[k])]
    return []


def write_rules(data: dict[str, Any], out: Path, name: str | None = None) -> Path:
    """``<out>/<name or X.Y>.json.gz``, byte-reproducible (gzip mtime 0)."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name or data['kernel']}.json.gz"
    raw = (json.dumps(data, indent=1, sort_keys=False) + "\n").encode()
    path.write_bytes(gzip.compress(raw, compresslevel=9, mtime=0))
    return path


def rules_digest(data: dict[str, Any]) -> str:
    """A digest of what the rules say, without where they were read (sources, versions, line numbers):
    two lines with the same digest give the same verdicts."""

    def strip(o: Any) -> Any:
        if isinstance(o, dict):
            return {k: strip(v) for k, v in o.items() if not k.endswith("source") and k not in _NOT_RULES}
        if isinstance(o, list):
            return [strip(v) for v in o]
        return o

    return hashlib.sha256(json.dumps(strip(data), sort_keys=True).encode()).hexdigest()[:16]


_NOT_RULES = {"kernel", "kernel_full", "source_package", "generated_by", "selftest_expectations", "notes", "desc"}


def write_index(out: Path) -> Path:
    """``<out>/index.json``: every line of ``lines.json`` with its release, source, digest and status,
    so ``cpumodel kernels`` lists the lines without loading any rule set."""
    from cpumodel.kvm.lines import lines

    entries: list[dict[str, Any]] = []
    digests: dict[str, str] = {}
    for ln in lines():
        path = out / f"{ln.line}.json.gz"
        if not ln.modelled or not path.exists():
            entries.append({"line": ln.line, "release": ln.release, "modelled": False,
                            "why": ln.why or f"no rules generated for {ln.line}"})
            continue
        data = json.loads(gzip.decompress(path.read_bytes()))
        dig = rules_digest(data)
        e: dict[str, Any] = {"line": ln.line, "release": data["kernel_full"], "modelled": True,
                             "source_package": data.get("source_package", ""), "file": path.name,
                             "digest": dig, "writable_id_regs": data.get("writable_id_regs", True)}
        if ln.note:
            e["note"] = ln.note
        same = [k for k, d in digests.items() if d == dig]
        if same:
            e["same_rules_as"] = same[0]
        digests[ln.line] = dig
        entries.append(e)
    path = out / "index.json"
    path.write_text(json.dumps({"format": 1, "generated_by": "tools/gen_kvm.py", "lines": entries}, indent=1) + "\n")
    return path


def main(argv: list[str] | None = None) -> int:
    from cpumodel.kvm.lines import DEFAULT_SRC, lines, source_tree

    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("tree", type=Path, nargs="?",
                    help="root of one Linux source tree (default: every modelled line's tree under --src)")
    ap.add_argument("--src", type=Path, default=DEFAULT_SRC,
                    help=f"where the trees are, as linux-<release>/ (default: $CPUMODEL_LINUX_SRC or {DEFAULT_SRC})")
    ap.add_argument("--out", type=Path, default=DATA_DIR, help="output directory (default: cpumodel/data/kvm)")
    args = ap.parse_args(argv)
    if args.tree is not None:
        trees = [args.tree]
    else:
        trees = []
        for ln in lines():
            if not ln.modelled:
                continue
            tree = source_tree(ln, args.src)
            if tree is None:
                print(f"gen_kvm: no tree for {ln.line} at {args.src}/linux-{ln.release}", file=sys.stderr)
                return 1
            trees.append(tree)
    for tree in trees:
        try:
            data = generate(tree)
            validate(data)
        except (GenError, OSError) as exc:
            print(f"gen_kvm: {exc}", file=sys.stderr)
            return 1
        path = write_rules(data, args.out)
        print(f"wrote {path}: {len(data['registers'])} registers (Linux {data['kernel_full']})")
    print(f"wrote {write_index(args.out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
