"""Loading the per-kernel KVM rule files (``cpumodel/data/kvm/<X.Y>.json``).

The files are written by ``tools/gen_kvm.py`` from a Linux source tree; their
format is described in ``cpumodel/data/kvm/README.md``.  This module only reads
them and indexes them; the semantics live in :mod:`cpumodel.kvm.model`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

DATA_DIR = Path(__file__).resolve().parent.parent / "data" / "kvm"

Encoding = tuple[int, int, int, int, int]

_GENERIC_NAME = re.compile(r"S(\d)_(\d)_C?(\d+)_C?(\d+)_(\d)", re.I)


@dataclass(frozen=True)
class FieldRule:
    """One ``arm64_ftr_bits`` entry of the register (cpufeature.c)."""

    name: str
    shift: int
    width: int
    signed: bool
    policy: str  # the policy KVM applies (kvm_arm64_ftr_safe_value() overrides included)
    safe_val: int
    checked: bool  # wholly inside the writable mask, so arm64_check_features() looks at it
    source: str

    @property
    def mask(self) -> int:
        return ((1 << self.width) - 1) << self.shift


@dataclass(frozen=True)
class LayoutField:
    """A field of the register as the kernel's sysreg table lays it out."""

    name: str
    shift: int
    width: int
    signed: bool
    values: dict[str, int]

    @property
    def mask(self) -> int:
        return ((1 << self.width) - 1) << self.shift


@dataclass(frozen=True)
class RegisterRules:
    name: str
    encoding: Encoding
    writable_mask: int
    reported_in_writable_masks: bool
    aa32: bool
    set_user: str | None
    reset: str | None
    visibility: str | None
    fields: tuple[FieldRule, ...] | None  # None: no arm64_ftr_reg for it
    layout: tuple[LayoutField, ...]
    limit: dict[str, Any]
    set_handler: dict[str, Any]
    source: str
    raw: dict[str, Any] = field(repr=False, compare=False, hash=False, default_factory=dict)

    def layout_field(self, name: str) -> LayoutField:
        for f in self.layout:
            if f.name == name:
                return f
        raise KeyError(f"{self.name} has no field {name}")

    def field_at(self, shift: int, width: int = 4) -> LayoutField | None:
        for f in self.layout:
            if f.shift == shift and f.width == width:
                return f
        return None

    def field_name_for_bits(self, mask: int) -> str:
        for f in self.layout:
            if f.mask & mask:
                return f.name
        lo = (mask & -mask).bit_length() - 1
        hi = mask.bit_length() - 1
        return f"bits[{hi}:{lo}]" if hi != lo else f"bit[{lo}]"


@dataclass(frozen=True)
class KernelRules:
    """Everything known about one kernel version's handling of ID-register writes."""

    kernel: str
    kernel_full: str
    source_package: str
    registers: dict[str, RegisterRules]
    by_encoding: dict[Encoding, RegisterRules]
    other_registers: frozenset[str]
    conditions: dict[str, Any]
    derived: dict[str, Any]
    visibility_rules: dict[str, Any]
    check_features: dict[str, Any]
    first_run: tuple[dict[str, Any], ...]
    feature_aliases: dict[str, str | None]
    raw: dict[str, Any] = field(repr=False, compare=False, hash=False)

    def lookup(self, reg: str | Encoding) -> RegisterRules | None:
        """A register by name (``ID_AA64PFR0_EL1``), generic name (``S3_0_C0_C4_0``
        or the kernel's ``S3_0_0_4_0``) or encoding tuple."""
        if isinstance(reg, tuple):
            return self.by_encoding.get(reg)
        r = self.registers.get(reg) or self.registers.get(reg.upper())
        if r is not None:
            return r
        m = _GENERIC_NAME.fullmatch(reg.strip())
        if m:
            return self.by_encoding.get(tuple(int(x) for x in m.groups()))  # type: ignore[arg-type]
        return None

    def feature_names(self) -> frozenset[str]:
        """The vCPU-feature / VM-capability names this kernel's rules know."""
        return frozenset(v for v in self.feature_aliases.values() if v)


def _field_rules(entry: dict[str, Any]) -> tuple[FieldRule, ...] | None:
    if entry.get("fields") is None:
        return None
    return tuple(
        FieldRule(
            name=f["name"], shift=f["shift"], width=f["width"], signed=f["signed"],
            policy=f.get("kvm_policy", f["policy"]), safe_val=f["safe_val"], checked=f["checked"],
            source=f.get("kvm_policy_source", f["source"]) if "kvm_policy" in f else f["source"],
        )
        for f in entry["fields"]
    )


def _layout(entry: dict[str, Any]) -> tuple[LayoutField, ...]:
    return tuple(
        LayoutField(f["name"], f["shift"], f["width"], bool(f.get("signed", False)), dict(f.get("values", {})))
        for f in entry.get("layout", [])
    )


def parse_rules(data: dict[str, Any]) -> KernelRules:
    regs: dict[str, RegisterRules] = {}
    for name, e in data["registers"].items():
        regs[name] = RegisterRules(
            name=name,
            encoding=tuple(e["encoding"]),  # type: ignore[arg-type]
            writable_mask=int(e["writable_mask"], 16),
            reported_in_writable_masks=bool(e.get("reported_in_writable_masks")),
            aa32=bool(e.get("aa32")),
            set_user=e.get("set_user"),
            reset=e.get("reset"),
            visibility=e.get("visibility"),
            fields=_field_rules(e),
            layout=_layout(e),
            limit=e["kvm_limit"],
            set_handler=e["set_handler"],
            source=e["desc"]["source"],
            raw=e,
        )
    return KernelRules(
        kernel=data["kernel"],
        kernel_full=data["kernel_full"],
        source_package=data.get("source_package", ""),
        registers=regs,
        by_encoding={r.encoding: r for r in regs.values()},
        other_registers=frozenset(data.get("other_registers", [])),
        conditions=data.get("conditions", {}),
        derived=data.get("derived", {}),
        visibility_rules=data.get("visibility_rules", {}),
        check_features=data.get("check_features", {}),
        first_run=tuple(data.get("first_run", [])),
        feature_aliases=data.get("feature_aliases", {}),
        raw=data,
    )


def _version_key(v: str) -> tuple[int, ...]:
    return tuple(int(x) for x in v.split("."))


def kernels() -> list[str]:
    """Kernel versions (``"6.12"``, ...) with a rule file, oldest first."""
    return sorted((p.stem for p in DATA_DIR.glob("*.json")), key=_version_key)


@cache
def load_kernel(version: str) -> KernelRules:
    """The rules of one kernel version; ``"6.12"`` or a full ``"6.12.117"``
    (which picks the 6.12 file).  Raises ``KeyError`` for an unknown version."""
    parts = version.strip().split(".")
    key = ".".join(parts[:2])
    path = DATA_DIR / f"{key}.json"
    if len(parts) < 2 or not path.exists():
        raise KeyError(f"no KVM rules for kernel {version!r}; known: {', '.join(kernels())}")
    return parse_rules(json.loads(path.read_text()))
