"""Oracle test cases: the JSON-lines case format, the generator and the probe's text format.

A case file has one JSON object per line::

    {"reg": "ID_AA64PFR0_EL1", "encoding": [3,0,0,4,0], "value": "0x...",
     "features": ["pmu","sve"], "after_run": false}

``value`` is either an absolute 64-bit value ("0x..." or an int), or
``{"field_shift": 8, "field_width": 4, "field_value": 3}`` meaning "the default (as read
by the probe in that vCPU-feature set) with that field replaced", or the string
``"default"`` meaning the default itself (an unchanged write).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from cpumodel.oracle.errors import OracleError
from cpumodel.oracle.sysregs import (
    ORACLE_REGISTERS,
    Encoding,
    check_encoding,
    encoding_of,
    one_reg_id,
    sysreg_name,
)

#: Features the probe knows, in the order of its feature bitmask (bit 0 = pmu).
#: pmu = KVM_ARM_VCPU_PMU_V3, sve = KVM_ARM_VCPU_SVE (+ KVM_ARM_VCPU_FINALIZE),
#: ptrauth = KVM_ARM_VCPU_PTRAUTH_ADDRESS + _GENERIC, el1_32bit = KVM_ARM_VCPU_EL1_32BIT.
#: vgic is not a vCPU feature: the VM gets an in-kernel GICv3 (KVM_CREATE_DEVICE
#: KVM_DEV_TYPE_ARM_VGIC_V3 + KVM_DEV_ARM_VGIC_CTRL_INIT) right after KVM_ARM_VCPU_INIT,
#: as QEMU does, before the defaults are read. Without it KVM clears the GIC fields of
#: ID_AA64PFR0_EL1/ID_PFR1_EL1 at the first KVM_RUN.
#: writable_imp_id is not a vCPU feature either: KVM_ENABLE_CAP(KVM_CAP_ARM_WRITABLE_IMP_ID_REGS)
#: on the VM before KVM_CREATE_VCPU (Linux >= 6.15); without it MIDR_EL1, REVIDR_EL1 and
#: AIDR_EL1 only accept their current value even where the writable mask says otherwise.
FEATURES: tuple[str, ...] = ("pmu", "sve", "ptrauth", "el1_32bit", "vgic", "writable_imp_id")

FeatureSet = frozenset[str]

#: The feature sets the generator covers by default.
DEFAULT_FEATURE_SETS: tuple[FeatureSet, ...] = (
    frozenset(),
    frozenset({"pmu"}),
    frozenset({"sve"}),
    frozenset({"ptrauth"}),
    frozenset({"el1_32bit"}),
    frozenset({"pmu", "sve", "ptrauth"}),
    frozenset({"pmu", "sve", "ptrauth", "el1_32bit"}),
    frozenset({"vgic"}),
    frozenset({"pmu", "vgic"}),
    frozenset({"pmu", "sve", "ptrauth", "vgic"}),
    frozenset({"vgic", "writable_imp_id"}),
)


def check_features(features: Iterable[str]) -> FeatureSet:
    fs = frozenset(features)
    unknown = sorted(fs - set(FEATURES))
    if unknown:
        raise OracleError(f"unknown vCPU feature(s) {', '.join(unknown)}; known: {', '.join(FEATURES)}")
    return fs


def feature_key(features: Iterable[str]) -> str:
    """Canonical name of a feature set: "none" or e.g. "pmu+sve" (in FEATURES order)."""
    fs = check_features(features)
    return "+".join(f for f in FEATURES if f in fs) or "none"


def features_of_key(key: str) -> FeatureSet:
    return frozenset() if key == "none" else check_features(key.split("+"))


def feature_mask(features: Iterable[str]) -> int:
    fs = check_features(features)
    return sum(1 << i for i, f in enumerate(FEATURES) if f in fs)


def sorted_features(features: Iterable[str]) -> list[str]:
    fs = frozenset(features)
    return [f for f in FEATURES if f in fs]


@dataclass(frozen=True)
class FieldValue:
    """ "The default with bits [shift, shift+width) replaced by value"; width 0 = the default."""

    shift: int
    width: int
    value: int

    def __post_init__(self) -> None:
        if not (0 <= self.shift < 64 and 0 <= self.width <= 64 and self.shift + self.width <= 64):
            raise OracleError(f"bad field: shift {self.shift}, width {self.width}")
        if self.value < 0 or (self.width < 64 and self.value >> self.width):
            raise OracleError(f"field value {self.value:#x} does not fit in {self.width} bits")

    def apply(self, default: int) -> int:
        mask = (1 << self.width) - 1
        return (default & ~(mask << self.shift) & (2**64 - 1)) | ((self.value & mask) << self.shift)


UNCHANGED = FieldValue(0, 0, 0)

Value = int | FieldValue


@dataclass(frozen=True)
class Case:
    """One KVM_SET_ONE_REG test: write ``value`` to ``encoding`` in a vCPU with ``features``."""

    encoding: Encoding
    value: Value
    features: FeatureSet = frozenset()
    after_run: bool = False

    @property
    def reg(self) -> str:
        return sysreg_name(self.encoding)

    @property
    def reg_id(self) -> int:
        return one_reg_id(self.encoding)

    def resolve(self, default: int | None) -> int:
        """The 64-bit value actually written, given the default read by the probe (None = 0)."""
        if isinstance(self.value, FieldValue):
            return self.value.apply(default or 0)
        return self.value

    def value_json(self) -> str | dict[str, int]:
        if isinstance(self.value, FieldValue):
            if self.value == UNCHANGED:
                return "default"
            return {"field_shift": self.value.shift, "field_width": self.value.width, "field_value": self.value.value}
        return f"{self.value:#018x}"

    def to_json(self) -> dict[str, object]:
        return {
            "reg": self.reg,
            "encoding": list(self.encoding),
            "value": self.value_json(),
            "features": sorted_features(self.features),
            "after_run": self.after_run,
        }

    @classmethod
    def from_json(cls, obj: object) -> Case:
        if not isinstance(obj, dict):
            raise OracleError(f"a case must be a JSON object, got {obj!r}")
        if "encoding" in obj:
            encoding = check_encoding(obj["encoding"])
            if "reg" in obj and obj["reg"] != sysreg_name(encoding):
                raise OracleError(
                    f"case names {obj['reg']!r} but its encoding {list(encoding)} is {sysreg_name(encoding)}"
                )
        elif "reg" in obj:
            encoding = encoding_of(str(obj["reg"]))
        else:
            raise OracleError(f"case has neither 'encoding' nor 'reg': {obj!r}")
        features = check_features(obj.get("features", []))
        after_run = obj.get("after_run", False)
        if not isinstance(after_run, bool):
            raise OracleError(f"after_run must be true or false, got {after_run!r}")
        return cls(encoding, parse_value(obj.get("value")), features, after_run)


def parse_value(raw: object) -> Value:
    if raw == "default":
        return UNCHANGED
    if isinstance(raw, bool):
        raise OracleError(f"bad case value {raw!r}")
    if isinstance(raw, int):
        value = raw
    elif isinstance(raw, str):
        try:
            value = int(raw, 0)
        except ValueError:
            raise OracleError(f"bad case value {raw!r}: want '0x...', a field object or 'default'") from None
    elif isinstance(raw, dict):
        try:
            return FieldValue(int(raw["field_shift"]), int(raw["field_width"]), int(raw["field_value"]))
        except (KeyError, TypeError, ValueError):
            raise OracleError(f"bad field value {raw!r}: want field_shift, field_width and field_value") from None
    else:
        raise OracleError(f"bad case value {raw!r}")
    if not 0 <= value < 2**64:
        raise OracleError(f"case value {raw!r} is not a 64-bit unsigned value")
    return value


def read_cases(path: Path) -> list[Case]:
    """Read a JSON-lines case file (blank lines and lines starting with # are ignored)."""
    cases: list[Case] = []
    try:
        lines = path.read_text().splitlines()
    except OSError as e:
        raise OracleError(f"cannot read case file {path}: {e.strerror}") from None
    for n, text in enumerate(lines, 1):
        text = text.strip()
        if not text or text.startswith("#"):
            continue
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as e:
            raise OracleError(f"{path}:{n}: not JSON: {e.msg}") from None
        try:
            cases.append(Case.from_json(obj))
        except OracleError as e:
            raise OracleError(f"{path}:{n}: {e.message}") from None
    return cases


def write_cases(path: Path, cases: Iterable[Case]) -> int:
    n = 0
    with path.open("w") as f:
        for case in cases:
            f.write(json.dumps(case.to_json(), separators=(",", ":")) + "\n")
            n += 1
    return n


def generate_cases(
    feature_sets: Sequence[FeatureSet] = DEFAULT_FEATURE_SETS,
    registers: Sequence[Encoding] = ORACLE_REGISTERS,
    *,
    nibble_sweep: bool = True,
    absolute: bool = True,
    after_run: bool = True,
) -> list[Case]:
    """The standard sweep, per feature set and register:

    - nibble sweep: every 4-bit field (shift 0..60) set to every value 0..15, relative to
      the default (this includes every single-bit flip of the default, so every bit
      outside the writable mask is probed, and the unchanged value);
    - absolute: the all-zeros and all-ones values;
    - after_run (after the vCPU has run once): the unchanged default, and every nibble set
      to 0 (a change unless that nibble already is 0) - KVM must answer EBUSY to changes.
    """
    cases: list[Case] = []
    for fs in feature_sets:
        fs = check_features(fs)
        for enc in registers:
            if nibble_sweep:
                for shift in range(0, 64, 4):
                    for v in range(16):
                        cases.append(Case(enc, FieldValue(shift, 4, v), fs))
            if absolute:
                cases.append(Case(enc, 0, fs))
                cases.append(Case(enc, 2**64 - 1, fs))
        if after_run:
            for enc in registers:
                cases.append(Case(enc, UNCHANGED, fs, after_run=True))
                for shift in range(0, 64, 4):
                    cases.append(Case(enc, FieldValue(shift, 4, 0), fs, after_run=True))
    return cases


@dataclass(frozen=True)
class CaseFile:
    """The probe's text input and how its case numbers map back to the caller's list."""

    text: str
    order: list[int]  # order[probe case number] = index into the caller's case list
    blocks: list[FeatureSet]


def encode_case_file(
    cases: Sequence[Case],
    feature_sets: Sequence[FeatureSet],
    registers: Sequence[Encoding] = ORACLE_REGISTERS,
    watchdog_seconds: int = 900,
) -> CaseFile:
    """The line-based text the probe reads (format documented at the top of probe.c).

    One block per feature set (in the given order, each a fresh VM); within a block the
    before-run cases come first, then ``X`` (run once), then the after-run cases.
    """
    blocks = [check_features(fs) for fs in feature_sets]
    if len(set(blocks)) != len(blocks):
        raise OracleError("a feature set is listed twice")
    by_block: dict[FeatureSet, tuple[list[int], list[int]]] = {fs: ([], []) for fs in blocks}
    for i, case in enumerate(cases):
        if case.features not in by_block:
            raise OracleError(
                f"case {i} ({case.reg}) uses feature set {feature_key(case.features)!r}, which is not"
                f" among the requested feature sets ({', '.join(feature_key(b) for b in blocks)})"
            )
        by_block[case.features][1 if case.after_run else 0].append(i)
    regs = list(dict.fromkeys([*registers, *(c.encoding for c in cases)]))
    if len(regs) > 256:
        raise OracleError(f"too many distinct registers ({len(regs)}); the probe reads at most 256")
    lines = [f"T {int(watchdog_seconds)}"]
    lines += [f"G {one_reg_id(r):x}" for r in regs]
    order: list[int] = []
    for fs in blocks:
        lines.append(f"B {feature_mask(fs):x}")
        before, after = by_block[fs]
        for phase, idxs in enumerate((before, after)):
            if phase == 1 and idxs:
                lines.append("X")
            for i in idxs:
                case = cases[i]
                v = case.value
                if isinstance(v, FieldValue):
                    lines.append(f"M {case.reg_id:x} {v.shift} {v.width} {v.value:x}")
                else:
                    lines.append(f"W {case.reg_id:x} {v:x}")
                order.append(i)
        lines.append("E")
    return CaseFile("\n".join(lines) + "\n", order, blocks)
