#!/usr/bin/env python3
"""Extract what a guest kernel decides from its CPU identity, from a Linux source tree.

Usage::

    python -m tools.gen_errata /work/src/linux-7.3.4 [--out cpumodel/data/errata]

Reads, from the given tree:

* ``arch/arm64/include/asm/cputype.h`` - implementer and part numbers, the ``MIDR_*``
  model constants and the ``MIDR_RANGE`` family of macros;
* ``arch/arm64/kernel/cpu_errata.c`` - every ``struct midr_range`` list and every
  ``struct arm64_cpu_capabilities`` table (``arm64_errata[]`` and the ``match_list``
  tables it names): capability, description, MIDR ranges with variant/revision bounds,
  the REVIDR bits that mark a fixed part (``MIDR_FIXED``), the matcher function, and
  the ``CONFIG_*`` options each entry and range is compiled under (``#ifdef`` nesting);
* ``arch/arm64/kernel/proton-pack.c`` - the Spectre-v2/v3a/v4 and Spectre-BHB MIDR
  lists, and the k value of each branch-history loop list;
* ``arch/arm64/Kconfig`` - each option's line and default;
* ``include/linux/arm-smccc.h`` and ``arch/arm64/include/uapi/asm/kvm.h`` - the KVM
  vendor hypercalls through which a guest learns its target implementations (6.15+).

Decisions that live in function bodies (a matcher that also reads CTR_EL0.DIC, one that
only runs at EL2, the order in which the BHB mitigation is chosen) are described by
hand in ``tools/errata_overlay.json``; every such description quotes the code it
models, and the generator refuses to run when a quote is not found in that function
of that tree (and records the line it was found on). Macro meanings the parser
hard-codes are checked the same way against their ``#define``.

Writes ``<out>/<X.Y>.json`` (format: ``cpumodel/data/errata/README.md``).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

from cpumodel.kvm.gen import GenError, find_functions, line_of, matching, quote_re, read_version, strip_comments

HERE = Path(__file__).resolve().parent
OVERLAY = HERE / "errata_overlay.json"
OUT = HERE.parent / "cpumodel" / "data" / "errata"

CPUTYPE_H = "arch/arm64/include/asm/cputype.h"
ERRATA_C = "arch/arm64/kernel/cpu_errata.c"
PROTON_C = "arch/arm64/kernel/proton-pack.c"
KCONFIG = "arch/arm64/Kconfig"
SMCCC_H = "include/linux/arm-smccc.h"
UAPI_KVM_H = "arch/arm64/include/uapi/asm/kvm.h"
CPUFEATURE_H = "arch/arm64/include/asm/cpufeature.h"
CPUFEATURE_C = "arch/arm64/kernel/cpufeature.c"
HYPERCALLS_C = "arch/arm64/kvm/hypercalls.c"
ARM_PSCI_H = "include/kvm/arm_psci.h"

# Macros whose meaning the parser hard-codes: file -> {macro: quote its definition must contain}.
MACRO_QUOTES: dict[str, dict[str, str]] = {
    CPUTYPE_H: {
        "MIDR_CPU_VAR_REV": "(((var) << MIDR_VARIANT_SHIFT) | (rev))",
        "MIDR_REV_RANGE": "MIDR_RANGE(m, v, r_min, v, r_max)",
        "MIDR_REV": "MIDR_RANGE(m, v, r, v, r)",
        "MIDR_ALL_VERSIONS": "MIDR_RANGE(m, 0, 0, 0xf, 0xf)",
    },
    ERRATA_C: {
        "CAP_MIDR_RANGE": ".matches = is_affected_midr_range",
        "CAP_MIDR_ALL_VERSIONS": ".matches = is_affected_midr_range",
        "MIDR_FIXED": ".fixed_revs",
        "ERRATA_MIDR_REV_RANGE": "ERRATA_MIDR_RANGE(m, var, r_min, var, r_max)",
        "ERRATA_MIDR_REV": "ERRATA_MIDR_RANGE(model, var, rev, var, rev)",
        "ERRATA_MIDR_ALL_VERSIONS": "CAP_MIDR_ALL_VERSIONS(model)",
        "CAP_MIDR_RANGE_LIST": ".matches = is_affected_midr_range_list",
        "ERRATA_MIDR_RANGE_LIST": "CAP_MIDR_RANGE_LIST(midr_list)",
    },
}
MACRO_CHECKS = tuple((rel, macro, q) for rel, quotes in MACRO_QUOTES.items() for macro, q in quotes.items())

RANGE_MACROS = ("MIDR_ALL_VERSIONS", "MIDR_REV_RANGE", "MIDR_REV", "MIDR_RANGE")
LIST_NAMES = re.compile(r"struct\s+midr_range\s+(\w+)\s*\[\s*\]\s*=\s*\{")
CAPS_NAMES = re.compile(r"struct\s+arm64_cpu_capabilities\s+(\w+)\s*\[\s*\]\s*=\s*\{")


class Tree:
    """One source tree: comment-stripped files, functions, ``#if`` guards, source strings."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.kernel, self.version = read_version(root)
        self._files: dict[str, str] = {}

    def text(self, rel: str) -> str:
        if rel not in self._files:
            path = self.root / rel
            if not path.exists():
                raise GenError(f"missing {rel} in {self.root}")
            self._files[rel] = strip_comments(path.read_text(errors="replace"))
        return self._files[rel]

    def src(self, rel: str, line: int, what: str = "") -> str:
        return f"{rel}:{line}{' ' + what if what else ''} [Linux {self.version}]"

    def quote(self, rel: str, q: str, function: str | None = None) -> int:
        """Line of quote ``q`` (in ``function`` when given); GenError when absent."""
        text = self.text(rel)
        if function:
            funcs = find_functions(text)
            if function not in funcs:
                raise GenError(f"function {function}() not found in {rel} (Linux {self.version})")
            f = funcs[function]
            m = quote_re(q).search(f.body)
            if m is None:
                raise GenError(f"quote {q!r} not found in {function}() of {rel} (Linux {self.version})")
            return f.start + f.body.count("\n", 0, m.start())
        m = quote_re(q).search(text)
        if m is None:
            raise GenError(f"quote {q!r} not found in {rel} (Linux {self.version})")
        return line_of(text, m.start())


# --------------------------------------------------------------------------- #
# Preprocessor guards
# --------------------------------------------------------------------------- #

def guards_by_line(text: str) -> list[tuple[str, ...]]:
    """For each line (1-based index), the ``#if`` conditions it is compiled under."""
    lines = text.split("\n")
    out: list[tuple[str, ...]] = [()]
    stack: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        directive = line.strip()
        n = 1
        while directive.endswith("\\") and i + n < len(lines):
            directive = directive[:-1] + " " + lines[i + n].strip()
            n += 1
        m = re.match(r"#\s*(ifdef|ifndef|if|elif|else|endif)\b\s*(.*)", directive)
        for _ in range(n):
            out.append(tuple(stack))
        if m:
            kind, cond = m.group(1), re.sub(r"\s+", " ", m.group(2)).strip()
            if kind == "ifdef":
                stack.append(cond)
            elif kind == "ifndef":
                stack.append(f"!{cond}")
            elif kind == "if":
                stack.append(cond)
            elif kind in ("elif", "else") and stack:
                stack[-1] = f"!({stack[-1]})" if kind == "else" else cond
            elif kind == "endif" and stack:
                stack.pop()
        i += n
    return out


def configs(guards: tuple[str, ...]) -> list[str]:
    """The CONFIG_ options named by positive guards, outermost first."""
    out: list[str] = []
    for g in guards:
        if g.startswith("!"):
            continue
        for name in re.findall(r"\bCONFIG_\w+", g):
            if name not in out:
                out.append(name)
    return out


def erratum_ids(names: list[str]) -> list[str]:
    """Erratum numbers named by CONFIG options: CONFIG_ARM64_ERRATUM_1542419 -> 1542419."""
    out: list[str] = []
    for n in names:
        m = re.search(r"ERRATUM_(\w+)$", n) or re.search(r"_(\d+)_ERRATUM$", n)
        if m and m.group(1) not in out:
            out.append(m.group(1))
    return out


def blank_directives(text: str) -> str:
    """Blank preprocessor lines (keeping offsets) so array bodies parse as plain C."""
    out = []
    cont = False
    for line in text.split("\n"):
        if cont or line.lstrip().startswith("#"):
            cont = line.rstrip().endswith("\\")
            out.append(" " * len(line))
        else:
            out.append(line)
    return "\n".join(out)


def items(text: str, start: int, end: int) -> list[tuple[int, str]]:
    """Top-level comma-separated items of text[start:end], with their offsets."""
    out: list[tuple[int, str]] = []
    depth = 0
    cur = start
    in_str = False
    for i in range(start, end):
        c = text[i]
        if in_str:
            if c == '"' and text[i - 1] != "\\":
                in_str = False
            continue
        if c == '"':
            in_str = True
        elif c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
        elif c == "," and depth == 0:
            out.append((cur, text[cur:i]))
            cur = i + 1
    out.append((cur, text[cur:end]))
    res = []
    for off, s in out:
        stripped = s.strip()
        if stripped:
            res.append((off + (len(s) - len(s.lstrip())), stripped))
    return res


def call_args(s: str, name: str) -> list[str] | None:
    """Arguments of ``name(...)`` at the start of s (after optional whitespace)."""
    m = re.match(rf"\s*{name}\s*\(", s)
    if not m:
        return None
    close = matching(s, m.end() - 1, "(", ")")
    return [a for _, a in items(s, m.end(), close)]


# --------------------------------------------------------------------------- #
# cputype.h
# --------------------------------------------------------------------------- #

def num(expr: str, consts: dict[str, int]) -> int:
    expr = expr.strip()
    m = re.fullmatch(r"MIDR_CPU_VAR_REV\s*\((.*),(.*)\)", expr)
    if m:
        return (num(m.group(1), consts) << 20) | num(m.group(2), consts)
    m = re.fullmatch(r"BIT\s*\((.*)\)", expr)
    if m:
        return 1 << num(m.group(1), consts)
    m = re.fullmatch(r"\(\s*(.*)\s*\)", expr)
    if m:
        return num(m.group(1), consts)
    if expr in consts:
        return consts[expr]
    try:
        return int(expr.rstrip("uUlL"), 0)
    except ValueError:
        raise GenError(f"cannot evaluate {expr!r}") from None


def parse_cputype(t: Tree) -> tuple[dict[str, dict[str, Any]], dict[str, int]]:
    text = t.text(CPUTYPE_H)
    consts: dict[str, int] = {}
    for m in re.finditer(r"^#define\s+(\w+_CPU_(?:IMP|PART|VAR)_\w*|ARM_CPU_IMP_\w+)\s+(0x[0-9a-fA-F]+|\d+)\s*$",
                         text, re.M):
        consts[m.group(1)] = int(m.group(2), 0)
    cores: dict[str, dict[str, Any]] = {}
    for m in re.finditer(r"^#define\s+(MIDR_\w+)\s+MIDR_CPU_MODEL\(\s*(\w+)\s*,\s*(\w+)\s*\)", text, re.M):
        name, imp, part = m.groups()
        if imp not in consts or part not in consts:
            raise GenError(f"{CPUTYPE_H}: {name} uses unknown {imp} or {part}")
        cores[name] = {"implementer": consts[imp], "part": consts[part],
                       "midr": (consts[imp] << 24) | (0xF << 16) | (consts[part] << 4),
                       "source": t.src(CPUTYPE_H, line_of(text, m.start()))}
    # aliases: #define MIDR_FOO MIDR_BAR
    for m in re.finditer(r"^#define\s+(MIDR_\w+)\s+(MIDR_\w+)\s*$", text, re.M):
        if m.group(2) in cores and m.group(1) not in cores:
            cores[m.group(1)] = {**cores[m.group(2)], "alias_of": m.group(2),
                                 "source": t.src(CPUTYPE_H, line_of(text, m.start()))}
    if "MIDR_NEOVERSE_N1" not in cores:
        raise GenError(f"{CPUTYPE_H}: no MIDR_* constants found")
    return cores, consts


# --------------------------------------------------------------------------- #
# MIDR range lists and capability tables
# --------------------------------------------------------------------------- #

class Parser:
    def __init__(self, t: Tree, rel: str, cores: dict[str, dict[str, Any]], consts: dict[str, int]) -> None:
        self.t = t
        self.rel = rel
        self.raw = t.text(rel)
        self.code = blank_directives(self.raw)
        self.guards = guards_by_line(self.raw)
        self.cores = cores
        self.consts = consts
        self.lists: dict[str, list[dict[str, Any]]] = {}
        self.list_lines: dict[str, int] = {}
        for m in LIST_NAMES.finditer(self.code):
            open_b = m.end() - 1
            close = matching(self.code, open_b, "{", "}")
            self.lists[m.group(1)] = self.range_list(open_b + 1, close)
            self.list_lines[m.group(1)] = line_of(self.code, m.start())

    def line(self, off: int) -> int:
        return line_of(self.code, off)

    def cfg(self, off: int) -> list[str]:
        return configs(self.guards[self.line(off)])

    def one_range(self, s: str, off: int) -> dict[str, Any] | None:
        for macro in RANGE_MACROS:
            args = call_args(s, macro)
            if args is None:
                continue
            model = args[0]
            if model not in self.cores:
                raise GenError(f"{self.rel}:{self.line(off)}: unknown CPU model {model}")
            v = [num(a, self.consts) for a in args[1:]]
            if macro == "MIDR_ALL_VERSIONS":
                lo, hi = (0, 0), (0xF, 0xF)
            elif macro == "MIDR_REV_RANGE":
                lo, hi = (v[0], v[1]), (v[0], v[2])
            elif macro == "MIDR_REV":
                lo, hi = (v[0], v[1]), (v[0], v[1])
            else:
                lo, hi = (v[0], v[1]), (v[2], v[3])
            return {"model": model, "min": (lo[0] << 20) | lo[1], "max": (hi[0] << 20) | hi[1],
                    "kconfig": self.cfg(off), "source": self.t.src(self.rel, self.line(off))}
        return None

    def range_list(self, start: int, end: int) -> list[dict[str, Any]]:
        out = []
        for off, s in items(self.code, start, end):
            if re.fullmatch(r"\{\s*\}", s):
                continue
            r = self.one_range(s, off)
            if r is None:
                raise GenError(f"{self.rel}:{self.line(off)}: not a MIDR range: {s[:60]!r}")
            out.append(r)
        return out

    def list_ref(self, s: str, off: int) -> list[dict[str, Any]]:
        s = s.strip()
        if s in self.lists:
            return self.lists[s]
        # compound literal: ((const struct midr_range[]) { ... })
        m = re.search(r"struct\s+midr_range\s*\[\s*\]\s*\)\s*\{", s)
        if m:
            open_b = off + (len(self.code[off:off + len(s) + 200]) - len(self.code[off:off + len(s) + 200].lstrip()))
            abs_open = self.code.index("{", self.code.index("midr_range", open_b))
            close = matching(self.code, abs_open, "{", "}")
            return self.range_list(abs_open + 1, close)
        raise GenError(f"{self.rel}:{self.line(off)}: unknown MIDR list {s[:60]!r}")

    def caps_table(self, name: str) -> list[dict[str, Any]]:
        m = re.search(rf"struct\s+arm64_cpu_capabilities\s+{name}\s*\[\s*\]\s*=\s*\{{", self.code)
        if not m:
            raise GenError(f"{self.rel}: no capability table {name}[]")
        open_b = m.end() - 1
        close = matching(self.code, open_b, "{", "}")
        out = []
        for off, s in items(self.code, open_b + 1, close):
            if not s.startswith("{"):
                raise GenError(f"{self.rel}:{self.line(off)}: unexpected item in {name}[]")
            body_open = off
            body_close = matching(self.code, body_open, "{", "}")
            if not self.code[body_open + 1:body_close].strip():
                continue
            out.append(self.cap_entry(body_open + 1, body_close))
        return out

    def cap_entry(self, start: int, end: int) -> dict[str, Any]:
        e: dict[str, Any] = {"source": self.t.src(self.rel, self.line(start - 1)), "kconfig": self.cfg(start),
                             "ranges": [], "fixed": []}
        for off, s in items(self.code, start, end):
            m = re.match(r"\.(\w+(?:\.\w+)?)\s*=\s*(.*)$", s, re.S)
            if m:
                key, val = m.group(1), m.group(2).strip()
                if key == "desc":
                    e["desc"] = re.sub(r'"\s*"', "", val).strip('"')
                elif key == "capability":
                    e["capability"] = val
                elif key == "type":
                    e["type"] = val
                elif key == "matches":
                    e["matches"] = val
                elif key == "match_list":
                    e["match_list"] = self.caps_table(val)
                elif key == "midr_range_list":
                    e["ranges"] = self.list_ref(val, off + s.index(val))
                elif key == "midr_range":
                    r = self.one_range(val, off)
                    if r is None:
                        raise GenError(f"{self.rel}:{self.line(off)}: bad .midr_range")
                    e["ranges"] = [r]
                elif key == "midr_range.model":
                    if val not in self.cores:
                        raise GenError(f"{self.rel}:{self.line(off)}: unknown CPU model {val}")
                    e["ranges"] = [{"model": val, "min": 0, "max": 0xF0000F, "kconfig": self.cfg(off),
                                    "source": self.t.src(self.rel, self.line(off)), "model_mask": "kryo"}]
                elif key == "fixed_revs":
                    raise GenError(f"{self.rel}:{self.line(off)}: literal .fixed_revs not supported")
                continue
            self.cap_macro(e, s, off)
        if "match_list" in e:
            e.pop("ranges")
            e.pop("fixed")
        return e

    def cap_macro(self, e: dict[str, Any], s: str, off: int) -> None:
        name = re.match(r"\s*(\w+)", s)
        macro = name.group(1) if name else ""
        args = call_args(s, macro) if macro else None
        if args is None:
            raise GenError(f"{self.rel}:{self.line(off)}: cannot read {s[:60]!r}")
        if macro in ("ERRATA_MIDR_RANGE", "ERRATA_MIDR_REV_RANGE", "ERRATA_MIDR_REV", "ERRATA_MIDR_ALL_VERSIONS",
                     "CAP_MIDR_RANGE", "CAP_MIDR_ALL_VERSIONS"):
            inner = {"ERRATA_MIDR_RANGE": "MIDR_RANGE", "ERRATA_MIDR_REV_RANGE": "MIDR_REV_RANGE",
                     "ERRATA_MIDR_REV": "MIDR_REV", "ERRATA_MIDR_ALL_VERSIONS": "MIDR_ALL_VERSIONS",
                     "CAP_MIDR_RANGE": "MIDR_RANGE", "CAP_MIDR_ALL_VERSIONS": "MIDR_ALL_VERSIONS"}[macro]
            r = self.one_range(f"{inner}({', '.join(args)})", off)
            e["ranges"] = [r]
            e["matches"] = "is_affected_midr_range"
            if macro.startswith("ERRATA_"):
                e["type"] = "ARM64_CPUCAP_LOCAL_CPU_ERRATUM"
        elif macro in ("ERRATA_MIDR_RANGE_LIST", "CAP_MIDR_RANGE_LIST"):
            e["ranges"] = self.list_ref(args[0], off + s.index(args[0]))
            e["matches"] = "is_affected_midr_range_list"
            if macro.startswith("ERRATA_"):
                e["type"] = "ARM64_CPUCAP_LOCAL_CPU_ERRATUM"
        elif macro == "MIDR_FIXED":
            e["fixed"] = [{"rv": num(args[0], self.consts), "revidr_mask": num(args[1], self.consts)}]
        else:
            raise GenError(f"{self.rel}:{self.line(off)}: unknown initialiser macro {macro}")


# --------------------------------------------------------------------------- #
# Assemble
# --------------------------------------------------------------------------- #

def kconfig_index(t: Tree) -> dict[str, dict[str, Any]]:
    text = (t.root / KCONFIG).read_text(errors="replace")
    out: dict[str, dict[str, Any]] = {}
    blocks = list(re.finditer(r"^(?:menu)?config\s+(\w+)\s*$", text, re.M))
    for i, m in enumerate(blocks):
        end = blocks[i + 1].start() if i + 1 < len(blocks) else len(text)
        body = text[m.end():end]
        body = re.split(r"^(?:menu|endmenu|if|endif|choice|source)\b", body, maxsplit=1, flags=re.M)[0]
        d = re.search(r"^\s+default\s+(.+)$", body, re.M)
        out[f"CONFIG_{m.group(1)}"] = {"default": d.group(1).strip() if d else "n",
                                       "source": t.src(KCONFIG, line_of(text, m.start()))}
    return out


def check_macros(t: Tree) -> None:
    for rel, macro, q in MACRO_CHECKS:
        text = t.text(rel).replace("\\\n", " ")
        m = re.search(rf"^#define\s+{macro}\b[^\n]*", text, re.M)
        if not m or not quote_re(q).search(m.group(0)):
            raise GenError(f"{rel}: #define {macro} no longer contains {q!r} (Linux {t.version}); review the parser")


def apply_overlay(t: Tree, fn: str, spec: dict[str, Any], rel: str) -> dict[str, Any]:
    """An overlay entry with its quotes checked and their lines recorded."""
    out = {k: v for k, v in spec.items() if k not in ("quotes", "file")}
    lines = []
    for q in spec.get("quotes", []):
        lines.append(t.quote(spec.get("file", rel), q, fn))
    funcs = find_functions(t.text(spec.get("file", rel)))
    out["source"] = t.src(spec.get("file", rel), lines[0] if lines else funcs[fn].start, f"{fn}()")
    return out


def attach_matcher(t: Tree, p: Parser, entry: dict[str, Any], overlay: dict[str, Any], unmodelled: set[str]) -> None:
    fn = entry.get("matches")
    if fn is None:
        return
    funcs = find_functions(p.code)
    if fn in funcs:
        entry["matches_source"] = t.src(ERRATA_C, funcs[fn].start, f"{fn}()")
    if fn in ("is_affected_midr_range", "is_affected_midr_range_list", "cpucap_multi_entry_cap_matches",
              "is_kryo_midr"):
        return
    spec = overlay["matchers"].get(fn)
    if spec is None:
        unmodelled.add(fn)
        entry["condition"] = {"unmodelled": True}
        return
    cond = apply_overlay(t, fn, spec, ERRATA_C)
    if cond.get("ranges_from") == "body":
        body = funcs[fn].body
        rs = []
        for m in re.finditer(r"MIDR_(?:ALL_VERSIONS|REV_RANGE|REV|RANGE)\s*\(", body):
            close = matching(body, m.end() - 1, "(", ")")
            r = p.one_range(body[m.start():close + 1], funcs[fn].body_offset + m.start())
            if r:
                rs.append(r)
        if not rs:
            raise GenError(f"{fn}(): no MIDR range in its body (Linux {t.version})")
        entry["ranges"] = rs
    entry["condition"] = cond


def errata_table(t: Tree, p: Parser, overlay: dict[str, Any], kcfg: dict[str, Any]) -> list[dict[str, Any]]:
    caps = p.caps_table("arm64_errata")
    unmodelled: set[str] = set()
    used_cfg: set[str] = set()

    def finish(e: dict[str, Any]) -> None:
        attach_matcher(t, p, e, overlay, unmodelled)
        for r in e.get("ranges", []):
            r["errata"] = erratum_ids(r["kconfig"]) or erratum_ids(e["kconfig"])
            used_cfg.update(r["kconfig"])
        used_cfg.update(e["kconfig"])
        for sub in e.get("match_list", []):
            finish(sub)

    for e in caps:
        finish(e)
        desc_ids = re.findall(r"\b(\d{6,7}|AC\d\d_CPU_\d+|E\d{4})\b", e.get("desc", ""))
        e["errata"] = sorted(set(erratum_ids(e["kconfig"]) + desc_ids +
                                 [x for r in e.get("ranges", []) for x in r["errata"]] +
                                 [x for s in e.get("match_list", []) for r in s.get("ranges", [])
                                  for x in r["errata"]]))
    if unmodelled:
        print(f"gen_errata: Linux {t.version}: matchers without an overlay entry (reported as unmodelled): "
              f"{', '.join(sorted(unmodelled))}", file=sys.stderr)
    for c in sorted(used_cfg):
        if c not in kcfg:
            kcfg.setdefault("_missing", []).append(c)
    return caps


def spectre(t: Tree, cores: dict[str, Any], consts: dict[str, int], overlay: dict[str, Any]) -> dict[str, Any]:
    p = Parser(t, PROTON_C, cores, consts)
    text = p.code

    def lst(name: str) -> dict[str, Any]:
        if name not in p.lists:
            raise GenError(f"{PROTON_C}: no list {name}[] (Linux {t.version})")
        return {"ranges": p.lists[name], "source": t.src(PROTON_C, p.list_lines[name], f"{name}[]")}

    out: dict[str, Any] = {
        "v2_safe": lst("spectre_v2_safe_list"),
        "v3a_unsafe": lst("spectre_v3a_unsafe_list"),
        "v4_safe": lst("spectre_v4_safe_list"),
        "bhb_safe": lst("spectre_bhb_safe_list"),
    }
    loops = []
    for m in re.finditer(r"if\s*\(\s*is_midr_in_range_list\(\s*(?:read_cpuid_id\(\)\s*,\s*)?"
                         r"(spectre_bhb_k(\d+)_list)\s*\)\s*\)\s*k\s*=\s*(\d+)\s*;", text):
        name, k_name, k = m.group(1), int(m.group(2)), int(m.group(3))
        if k_name != k:
            raise GenError(f"{PROTON_C}: {name} sets k = {k}")
        loops.append({"k": k, **lst(name), "chosen_at": t.src(PROTON_C, line_of(text, m.start()))})
    if not loops:
        raise GenError(f"{PROTON_C}: no spectre_bhb_k*_list chain (Linux {t.version})")
    if [x["k"] for x in loops] != sorted((x["k"] for x in loops), reverse=True):
        raise GenError(f"{PROTON_C}: the k lists are not tested largest first")
    out["bhb_loops"] = loops
    steps = {}
    for key, spec in overlay["spectre"].items():
        steps[key] = apply_overlay(t, spec["function"], spec, spec.get("file", PROTON_C))
    # the BHB choices must come in the order the overlay lists them
    order = [k for k in overlay["spectre"] if overlay["spectre"][k].get("function") == "spectre_bhb_enable_mitigation"]
    lines = [int(steps[k]["source"].split(":")[1].split()[0]) for k in order]
    if lines != sorted(lines):
        raise GenError(f"{PROTON_C}: spectre_bhb_enable_mitigation() no longer tests {order} in that order")
    out["steps"] = steps
    return out


def target_impl(t: Tree) -> dict[str, Any]:
    text = t.text(ERRATA_C)
    if "cpu_errata_set_target_impl" not in text:
        return {"supported": False,
                "why": f"{ERRATA_C} has no cpu_errata_set_target_impl() [Linux {t.version}]"}
    out: dict[str, Any] = {"supported": True}
    line = t.quote(ERRATA_C, "__is_affected_midr_range(entry, target_impl_cpus[i].midr,", "is_affected_midr_range")
    out["errata_union"] = t.src(ERRATA_C, line, "is_affected_midr_range()")
    body = find_functions(t.text(ERRATA_C))["is_affected_midr_range"].body
    m = re.search(r"target_impl_cpus\[i\]\.midr,\s*target_impl_cpus\[i\]\.(midr|revidr)\s*\)", body)
    if m is None:
        raise GenError(f"{ERRATA_C}: is_affected_midr_range() passes no REVIDR for target implementations")
    # 6.17-7.1 pass each target implementation's MIDR where its REVIDR belongs
    out["revidr_from"] = m.group(1)
    out["lists_union"] = t.src(ERRATA_C, t.quote(ERRATA_C, "target_impl_cpus[i].midr", "is_midr_in_range"),
                               "is_midr_in_range()")
    out["set"] = t.src(ERRATA_C, t.quote(ERRATA_C, "bool cpu_errata_set_target_impl("))
    out["init"] = t.src(CPUFEATURE_C, t.quote(CPUFEATURE_C, "kvm_arm_target_impl_cpu_init();",
                                              "setup_boot_cpu_capabilities"), "setup_boot_cpu_capabilities()")
    fids = {}
    for name in ("ARM_SMCCC_KVM_FUNC_DISCOVER_IMPL_VER", "ARM_SMCCC_KVM_FUNC_DISCOVER_IMPL_CPUS"):
        m = re.search(rf"^#define\s+{name}\s+(\d+)", t.text(SMCCC_H), re.M)
        if not m:
            raise GenError(f"{SMCCC_H}: no {name}")
        fids[name] = {"value": int(m.group(1)), "source": t.src(SMCCC_H, line_of(t.text(SMCCC_H), m.start()))}
    for name in ("KVM_REG_ARM_VENDOR_HYP_BIT_DISCOVER_IMPL_VER", "KVM_REG_ARM_VENDOR_HYP_BIT_DISCOVER_IMPL_CPUS"):
        m = re.search(rf"\b{name}\s*=\s*(\d+)", t.text(UAPI_KVM_H))
        if not m:
            raise GenError(f"{UAPI_KVM_H}: no {name}")
        fids[name] = {"value": int(m.group(1)), "source": t.src(UAPI_KVM_H, line_of(t.text(UAPI_KVM_H), m.start()))}
    out["hypercalls"] = fids
    return out


def firmware(t: Tree) -> dict[str, Any]:
    """KVM's firmware pseudo-registers (Documentation/virt/kvm/arm/fw-pseudo-registers.rst): ids,
    values, defaults and the rules kvm_arm_set_fw_reg() applies to a restored value."""
    uapi = t.text(UAPI_KVM_H)
    hc = t.text(HYPERCALLS_C)
    for q in ("#define KVM_REG_ARM_FW (0x0014 << KVM_REG_ARM_COPROC_SHIFT)",
              "#define KVM_REG_ARM_FW_FEAT_BMAP (0x0016 << KVM_REG_ARM_COPROC_SHIFT)"):
        t.quote(UAPI_KVM_H, q)
    ids: dict[str, int] = {}
    regs: dict[str, dict[str, Any]] = {}
    for m in re.finditer(r"^#define\s+(KVM_REG_ARM_\w+)\s+KVM_REG_ARM_(FW_REG|FW_FEAT_BMAP_REG)\((\d+)\)", uapi, re.M):
        base = 0x0014 if m.group(2) == "FW_REG" else 0x0016
        ids[m.group(1)] = 0x6030000000000000 | (base << 16) | int(m.group(3))
        regs[m.group(1)] = {"id": f"{ids[m.group(1)]:#x}", "source": t.src(UAPI_KVM_H, line_of(uapi, m.start()))}
    m = re.search(r"kvm_arm_fw_reg_ids\[\]\s*=\s*\{([^}]*)\}", hc)
    if not m:
        raise GenError(f"{HYPERCALLS_C}: no kvm_arm_fw_reg_ids[]")
    listed = re.findall(r"KVM_REG_ARM_\w+", m.group(1))
    for name in listed:
        if name not in regs:
            raise GenError(f"{HYPERCALLS_C}: {name} has no id in {UAPI_KVM_H}")
        regs[name]["listed"] = t.src(HYPERCALLS_C, line_of(hc, m.start()), "kvm_arm_fw_reg_ids[]")
    regs = {k: v for k, v in regs.items() if k in listed}
    consts: dict[str, int] = {}
    for cm in re.finditer(r"^#define\s+(KVM_REG_ARM_SMCCC_ARCH_WORKAROUND_\d_\w+)\s+(\d+|\(1U << \d+\))", uapi, re.M):
        shift = re.search(r"<< (\d+)", cm.group(2))
        consts[cm.group(1)] = 1 << int(shift.group(1)) if shift else int(cm.group(2))
    for name in regs:
        if "WORKAROUND" in name:
            regs[name]["levels"] = {k.removeprefix(name + "_"): v for k, v in consts.items()
                                    if k.startswith(name + "_")}
    # bitmaps: the bits each accepts (GENMASK(<enum>_BIT_COUNT - 1, 0)) and their defaults
    for name in [n for n in regs if n.endswith("BMAP") or n.endswith("BMAP_2")]:
        em = re.search(rf"enum\s*\{{([^}}]*?){name}_BIT_COUNT", uapi, re.S)
        if not em:
            raise GenError(f"{UAPI_KVM_H}: no {name}_BIT_COUNT")
        bits = re.findall(r"(KVM_REG_ARM_\w+_BIT_\w+)\s*=\s*(\d+)", em.group(1))
        regs[name]["bits"] = {b: int(v) for b, v in bits}
        regs[name]["mask"] = (1 << (max((int(v) for _, v in bits), default=-1) + 1)) - 1
        field = {"KVM_REG_ARM_STD_BMAP": "std_bmap", "KVM_REG_ARM_STD_HYP_BMAP": "std_hyp_bmap",
                 "KVM_REG_ARM_VENDOR_HYP_BMAP": "vendor_hyp_bmap",
                 "KVM_REG_ARM_VENDOR_HYP_BMAP_2": "vendor_hyp_bmap_2"}[name]
        im = re.search(rf"smccc_feat->{field}\s*=\s*(\w+);", find_functions(hc)["kvm_arm_init_hypercalls"].body)
        regs[name]["default"] = regs[name]["mask"] if im else 0
        regs[name]["default_source"] = t.src(HYPERCALLS_C, t.quote(HYPERCALLS_C, im.group(0), "kvm_arm_init_hypercalls")
                                             if im else find_functions(hc)["kvm_arm_init_hypercalls"].start,
                                             "kvm_arm_init_hypercalls()")
    # PSCI versions kvm_arm_set_fw_reg() accepts, and the default (KVM_ARM_PSCI_LATEST)
    psci_h = t.text(ARM_PSCI_H)
    pv = {pm.group(1): (int(pm.group(2)) << 16) | int(pm.group(3))
          for pm in re.finditer(r"^#define\s+(KVM_ARM_PSCI_\d_\d)\s+PSCI_VERSION\((\d+),\s*(\d+)\)", psci_h, re.M)}
    lm = re.search(r"^#define\s+KVM_ARM_PSCI_LATEST\s+(KVM_ARM_PSCI_\d_\d)", psci_h, re.M)
    set_fn = find_functions(hc)["kvm_arm_set_fw_reg"]
    cases = re.findall(r"case\s+(KVM_ARM_PSCI_\d_\d)\s*:", set_fn.body)
    if not lm or not cases:
        raise GenError(f"{ARM_PSCI_H}/{HYPERCALLS_C}: PSCI versions not found")
    regs["KVM_REG_ARM_PSCI_VERSION"].update({
        "accepted": {c: pv[c] for c in cases}, "psci_0_1_without_0_2_only": True,
        "default": pv[lm.group(1)], "default_source": t.src(ARM_PSCI_H, line_of(psci_h, lm.start())),
        "rule_source": t.src(HYPERCALLS_C, t.quote(HYPERCALLS_C, "wants_02 =",
                                                    "kvm_arm_set_fw_reg"), "kvm_arm_set_fw_reg()")})
    rules = {
        "wa_level_le_host": "reg->id) < val)",
        "wa_mask": "if (val & ~KVM_REG_FEATURE_LEVEL_MASK)",
        "wa2_enabled_only_if_avail": "(val & KVM_REG_ARM_SMCCC_ARCH_WORKAROUND_2_ENABLED) &&",
        "wa2_level_le_host": "reg->id) < wa_level)",
    }
    out: dict[str, Any] = {"registers": regs, "rules": {
        k: t.src(HYPERCALLS_C, t.quote(HYPERCALLS_C, q, "kvm_arm_set_fw_reg"), "kvm_arm_set_fw_reg()")
        for k, q in rules.items()}}
    bm = find_functions(hc)["kvm_arm_set_fw_reg_bmap"]
    out["rules"]["bmap_unsupported_bit"] = t.src(HYPERCALLS_C, t.quote(HYPERCALLS_C, "if (val & ~fw_reg_features)",
                                                                        "kvm_arm_set_fw_reg_bmap"), bm.name + "()")
    out["rules"]["bmap_after_run"] = t.src(HYPERCALLS_C, t.quote(HYPERCALLS_C, "val != *fw_reg_bmap",
                                                                  "kvm_arm_set_fw_reg_bmap"), bm.name + "()")
    out["rules"]["host_levels"] = t.src(HYPERCALLS_C, find_functions(hc)["get_kernel_wa_level"].start,
                                        "get_kernel_wa_level()")
    # WA2 reads NOT_AVAIL when SSBS is there: the guest's view (kvm_has_feat) or, before, the host's cap
    for q, whose in (("if (kvm_has_feat(vcpu->kvm, ID_AA64PFR1_EL1, SSBS, IMP))", "guest"),
                     ("if (cpus_have_final_cap(ARM64_SSBS))", "host")):
        if quote_re(q).search(find_functions(hc)["get_kernel_wa_level"].body):
            line = t.quote(HYPERCALLS_C, q, "get_kernel_wa_level")
            out["wa2_ssbs"] = {"whose": whose, "source": t.src(HYPERCALLS_C, line, "get_kernel_wa_level()")}
            break
    else:
        raise GenError(f"{HYPERCALLS_C}: get_kernel_wa_level() no longer tests SSBS as modelled")
    return out


def generate(root: Path) -> dict[str, Any]:
    t = Tree(root)
    overlay = json.loads(OVERLAY.read_text())
    check_macros(t)
    cores, consts = parse_cputype(t)
    kcfg = kconfig_index(t)
    p = Parser(t, ERRATA_C, cores, consts)
    errata = errata_table(t, p, overlay, kcfg)
    used = sorted({c for e in errata for c in _all_cfg(e)})
    data: dict[str, Any] = {
        "kernel": t.kernel,
        "kernel_full": t.version,
        "origin": (root / ".origin").read_text().strip() if (root / ".origin").exists() else "",
        "generator": "tools/gen_errata.py",
        "cores": cores,
        "errata": errata,
        "spectre": spectre(t, cores, consts, overlay),
        "target_impl": target_impl(t),
        "firmware": firmware(t),
        "kconfig": {c: kcfg[c] for c in used if c in kcfg},
    }
    return data


def _all_cfg(e: dict[str, Any]) -> set[str]:
    out = set(e["kconfig"])
    for r in e.get("ranges", []):
        out.update(r["kconfig"])
    for s in e.get("match_list", []):
        out |= _all_cfg(s)
    return out


def dump(data: Any, indent: int = 0) -> str:
    """JSON with each object or list of scalars on one line (the files stay small and diffable)."""
    pad = " " * indent
    if isinstance(data, dict):
        if all(not isinstance(v, (dict, list)) or (isinstance(v, list) and all(
                not isinstance(x, (dict, list)) for x in v)) for v in data.values()):
            return json.dumps(data)
        inner = ",\n".join(f"{pad} {json.dumps(k)}: {dump(v, indent + 1)}" for k, v in data.items())
        return "{\n" + inner + "\n" + pad + "}"
    if isinstance(data, list):
        if all(not isinstance(x, (dict, list)) for x in data):
            return json.dumps(data)
        inner = ",\n".join(f"{pad} {dump(v, indent + 1)}" for v in data)
        return "[\n" + inner + "\n" + pad + "]"
    return json.dumps(data)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("trees", type=Path, nargs="+", help="Linux source tree(s) (have Makefile and arch/arm64)")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    for tree in args.trees:
        try:
            data = generate(tree)
        except (GenError, OSError) as exc:
            print(f"gen_errata: {tree}: {exc}", file=sys.stderr)
            return 1
        args.out.mkdir(parents=True, exist_ok=True)
        path = args.out / f"{data['kernel']}.json"
        path.write_text(dump(data) + "\n")
        print(f"wrote {path}: {len(data['errata'])} capabilities, {len(data['cores'])} cores "
              f"(Linux {data['kernel_full']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
