"""The recording format (gzip JSON) and its loader: the one place that reads recordings.

Schema ``cpumodel-oracle-recording/2`` (written; ``/1`` is still read)::

    {"schema": "cpumodel-oracle-recording/2",
     "kernel": {"release", "version", "uname_version", "debian_package", "package_version"},
     "qemu": {"version", "cpu", "machine", "memory_mb"},
     "feature_sets": {"<key>": {"features", "init_errno", "finalize_errno", "vgic_errno",
                                "imp_id_errno", "defaults", "get_errno", "writable_masks",
                                "masks_errno", "run", "drift", "restore_failures", "skipped_cases"}},
     "sequences": {"<name>": {"features", "init_errno", ..., "final": [{"reg", "value"}],
                              "skipped_cases"}},
     "errno_codes": {"a": "EINVAL", "b": "EBUSY", ...},
     "groups": [{"features": "<key>", "reg", "encoding", "after_run"?: true, "seq"?: "<name>",
                 "requests": [token, ...], "errnos": "0aa0b...", "values"?: ["0x...", ...]}],
     "timing": {...}, "probe": {...}, "kernel_warnings": [...]}

Cases are stored in groups of consecutive cases with the same feature set, register,
after_run and sequence, in the order they ran. ``requests`` has one token per case:
``=<hex>`` an absolute value, ``d`` the default, ``f<shift>:<width>:<hex>`` the default with
one field replaced, ``m<mask-hex>:<bits-hex>`` the default with the bits under mask
replaced; ``sweep4`` stands for the 256 tokens ``f0:4:0`` ... ``f60:4:f`` (every 4-bit field
set to every value). ``errnos`` has one character per case: ``0`` accepted, else a key of
``errno_codes``. The value written by a relative token is derived from the feature set's
default (as the probe did); ``values`` lists them explicitly only where that derivation
would not give what was written. Schema ``/1`` had a flat ``"cases"`` list of
``{"reg", "encoding", "value", "features", "after_run", "errno", "request"?}`` objects.

Values and masks are "0x%016x" strings; errno is 0 or a name ("EINVAL"); a feature-set
``<key>`` is "none" or the features joined by "+" (see cases.feature_key).
"""

from __future__ import annotations

import gzip
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from cpumodel.oracle.cases import (
    UNCHANGED,
    Case,
    FeatureSet,
    FieldValue,
    MaskedValue,
    Value,
    check_features,
    feature_key,
    features_of_key,
    parse_value,
    sorted_features,
    value_json,
)
from cpumodel.oracle.errors import OracleError
from cpumodel.oracle.sysregs import Encoding, check_encoding

SCHEMA = "cpumodel-oracle-recording/2"
SCHEMA_V1 = "cpumodel-oracle-recording/1"
SCHEMAS = (SCHEMA, SCHEMA_V1)

Errno = int | str


def hex64(v: int) -> str:
    return f"{v:#018x}"


@dataclass(frozen=True, slots=True)
class CaseResult:
    """One KVM_SET_ONE_REG outcome."""

    reg: str
    encoding: Encoding
    value: int  # the 64-bit value actually written
    features: FeatureSet
    after_run: bool
    errno: Errno  # 0 or "EINVAL", "EBUSY", ...
    request: object = None  # the value as asked, if not absolute ({"field_shift":..}, {"mask":..} or "default")
    seq: str | None = None  # the sequence (migration) the case belongs to: run in order, writes kept

    def to_json(self) -> dict[str, object]:
        d: dict[str, object] = {
            "reg": self.reg,
            "encoding": list(self.encoding),
            "value": hex64(self.value),
            "features": sorted_features(self.features),
            "after_run": self.after_run,
            "errno": self.errno,
        }
        if self.request is not None:
            d["request"] = self.request
        if self.seq is not None:
            d["seq"] = self.seq
        return d

    def to_case(self) -> Case:
        """The case that produced this result (field form kept, so it replays on any kernel)."""
        value = parse_value(self.request) if self.request is not None else self.value
        return Case(self.encoding, value, self.features, self.after_run, self.seq)

    @classmethod
    def from_json(cls, d: dict[str, object]) -> CaseResult:
        errno = d["errno"]
        if not isinstance(errno, (int, str)):
            raise OracleError(f"bad errno {errno!r}")
        return cls(
            reg=str(d["reg"]),
            encoding=_encoding(d["encoding"]),
            value=int(str(d["value"]), 16),
            features=_features(d.get("features", [])),
            after_run=bool(d.get("after_run", False)),
            errno=errno,
            request=d.get("request"),
            seq=d.get("seq"),  # type: ignore[arg-type]
        )


# Loading a recording means ~200,000 cases: validate each distinct encoding/feature list once.
_ENCODINGS: dict[tuple[object, ...], Encoding] = {}
_FEATURES: dict[tuple[object, ...], FeatureSet] = {}


def _encoding(raw: object) -> Encoding:
    key = tuple(raw) if isinstance(raw, list) else (raw,)
    enc = _ENCODINGS.get(key)
    if enc is None:
        enc = _ENCODINGS[key] = check_encoding(raw)
    return enc


def _features(raw: object) -> FeatureSet:
    if not isinstance(raw, list):
        raise OracleError(f"features must be a list, got {raw!r}")
    key = tuple(raw)
    fs = _FEATURES.get(key)
    if fs is None:
        fs = _FEATURES[key] = check_features(str(f) for f in raw)
    return fs


@dataclass
class FeatureSetRecord:
    """What one vCPU-feature set (one fresh VM) looked like before any write."""

    features: FeatureSet
    init_errno: Errno | None  # None: not attempted (an earlier VM-level step failed)
    finalize_errno: Errno | None = None
    vgic_errno: Errno | None = None
    imp_id_errno: Errno | None = None
    defaults: dict[str, int | None] = field(default_factory=dict)
    get_errno: dict[str, Errno] = field(default_factory=dict)
    writable_masks: dict[str, int] = field(default_factory=dict)
    masks_errno: Errno | None = 0  # None: not attempted (Linux < 6.7 has no such ioctl)
    run: dict[str, object] | None = None
    drift: list[dict[str, object]] = field(default_factory=list)
    restore_failures: list[dict[str, object]] = field(default_factory=list)
    skipped_cases: int = 0

    @property
    def accepted(self) -> bool:
        return (
            self.init_errno == 0
            and self.finalize_errno in (0, None)
            and self.vgic_errno in (0, None)
            and self.imp_id_errno in (0, None)
        )

    def to_json(self) -> dict[str, object]:
        return {
            **_vm_json(self),
            "defaults": {k: None if v is None else hex64(v) for k, v in self.defaults.items()},
            "get_errno": dict(self.get_errno),
            "writable_masks": {k: hex64(v) for k, v in self.writable_masks.items()},
            "masks_errno": self.masks_errno,
            "run": self.run,
            "drift": self.drift,
            "restore_failures": self.restore_failures,
            "skipped_cases": self.skipped_cases,
        }

    @classmethod
    def from_json(cls, d: dict[str, object]) -> FeatureSetRecord:
        defaults = d.get("defaults") or {}
        masks = d.get("writable_masks") or {}
        assert isinstance(defaults, dict) and isinstance(masks, dict)
        return cls(
            features=check_features(d.get("features", [])),  # type: ignore[arg-type]
            init_errno=d.get("init_errno", 0),  # type: ignore[arg-type]
            finalize_errno=d.get("finalize_errno"),  # type: ignore[arg-type]
            vgic_errno=d.get("vgic_errno"),  # type: ignore[arg-type]
            imp_id_errno=d.get("imp_id_errno"),  # type: ignore[arg-type]
            defaults={k: None if v is None else int(v, 16) for k, v in defaults.items()},
            get_errno=dict(d.get("get_errno") or {}),  # type: ignore[call-overload]
            writable_masks={k: int(v, 16) for k, v in masks.items()},
            masks_errno=d.get("masks_errno", 0),  # type: ignore[arg-type]
            run=d.get("run"),  # type: ignore[arg-type]
            drift=list(d.get("drift") or []),  # type: ignore[call-overload]
            restore_failures=list(d.get("restore_failures") or []),  # type: ignore[call-overload]
            skipped_cases=int(d.get("skipped_cases", 0)),  # type: ignore[call-overload]
        )


def _vm_json(r: FeatureSetRecord | SequenceRecord) -> dict[str, object]:
    """How a VM's set-up went (its features, then each step's errno): the head of both records' JSON."""
    return {
        "features": sorted_features(r.features),
        "init_errno": r.init_errno,
        "finalize_errno": r.finalize_errno,
        "vgic_errno": r.vgic_errno,
        "imp_id_errno": r.imp_id_errno,
    }


@dataclass
class SequenceRecord:
    """A sequence's VM (same features as a feature set, a fresh VM) and what it ended with."""

    features: FeatureSet
    init_errno: Errno | None
    finalize_errno: Errno | None = None
    vgic_errno: Errno | None = None
    imp_id_errno: Errno | None = None
    final: list[dict[str, object]] = field(default_factory=list)  # registers that differ from the defaults at the end
    skipped_cases: int = 0

    def to_json(self) -> dict[str, object]:
        return {
            **_vm_json(self),
            "final": self.final,
            "skipped_cases": self.skipped_cases,
        }

    @classmethod
    def from_json(cls, d: dict[str, object]) -> SequenceRecord:
        return cls(
            features=check_features(d.get("features", [])),  # type: ignore[arg-type]
            init_errno=d.get("init_errno"),  # type: ignore[arg-type]
            finalize_errno=d.get("finalize_errno"),  # type: ignore[arg-type]
            vgic_errno=d.get("vgic_errno"),  # type: ignore[arg-type]
            imp_id_errno=d.get("imp_id_errno"),  # type: ignore[arg-type]
            final=list(d.get("final") or []),  # type: ignore[call-overload]
            skipped_cases=int(d.get("skipped_cases", 0)),  # type: ignore[call-overload]
        )


@dataclass
class Recording:
    """A whole oracle run: one kernel, one QEMU CPU model, several feature sets."""

    kernel: dict[str, object]
    qemu: dict[str, object]
    feature_sets: dict[str, FeatureSetRecord]
    cases: list[CaseResult]
    timing: dict[str, object]
    probe: dict[str, object] = field(default_factory=dict)
    kernel_warnings: list[str] = field(default_factory=list)
    sequences: dict[str, SequenceRecord] = field(default_factory=dict)
    schema: str = SCHEMA

    @property
    def kernel_version(self) -> str:
        """The upstream version, e.g. "6.12.117" or "6.1.176" (Debian's 6.1 ABI is "6.1.0-50")."""
        pv = str(self.kernel.get("package_version") or "")
        if pv and pv[0].isdigit():
            return pv.split("-")[0].split("~")[0].split("+")[0]
        uv = str(self.kernel.get("uname_version") or "")
        m = re.search(r"Debian (\d+\.\d+\.\d+)", uv)
        if m:
            return m.group(1)
        return str(self.kernel.get("release", "")).split("-")[0].split("+")[0]

    @property
    def kernel_line(self) -> str:
        """Major.minor, e.g. "6.12"."""
        return ".".join(self.kernel_version.split(".")[:2])

    @property
    def cpu(self) -> str:
        return str(self.qemu.get("cpu", ""))

    def default_of(self, features: FeatureSet, reg: str) -> int | None:
        fs = self.feature_sets.get(feature_key(features))
        return fs.defaults.get(reg) if fs is not None else None

    def feature_set(self, features: FeatureSet | str) -> FeatureSetRecord:
        key = features if isinstance(features, str) else feature_key(features)
        return self.feature_sets[key]

    def to_json(self) -> dict[str, object]:
        codes, groups = _encode_groups(self)
        return {
            "schema": SCHEMA,
            "kernel": self.kernel,
            "qemu": self.qemu,
            "feature_sets": {k: v.to_json() for k, v in self.feature_sets.items()},
            "sequences": {k: v.to_json() for k, v in self.sequences.items()},
            "errno_codes": codes,
            "groups": groups,
            "timing": self.timing,
            "probe": self.probe,
            "kernel_warnings": self.kernel_warnings,
        }

    @classmethod
    def from_json(cls, d: object, cases: bool = True, sequences_only: bool = False) -> Recording:
        """``cases=False``: everything but the cases (``.cases`` stays empty; much faster);
        ``sequences_only``: of the cases, only those of sequences (migrations)."""
        if not isinstance(d, dict) or d.get("schema") not in SCHEMAS:
            got = d.get("schema") if isinstance(d, dict) else type(d).__name__
            raise OracleError(f"not an oracle recording (schema {got!r}, want {SCHEMA!r})")
        try:
            rec = cls(
                kernel=dict(d["kernel"]),
                qemu=dict(d["qemu"]),
                feature_sets={k: FeatureSetRecord.from_json(v) for k, v in d["feature_sets"].items()},
                cases=[],
                timing=dict(d.get("timing") or {}),
                probe=dict(d.get("probe") or {}),
                kernel_warnings=list(d.get("kernel_warnings") or []),
                sequences={k: SequenceRecord.from_json(v) for k, v in (d.get("sequences") or {}).items()},
                schema=str(d["schema"]),
            )
            if not cases:
                pass
            elif d["schema"] == SCHEMA_V1:
                rec.cases = [CaseResult.from_json(c) for c in d["cases"] if not sequences_only or c.get("seq")]
            else:
                groups = d["groups"]
                if sequences_only:
                    groups = [g for g in groups if g.get("seq") is not None]
                rec.cases = _decode_groups(rec, d["errno_codes"], groups)
            return rec
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise OracleError(f"malformed oracle recording: {e!r}") from None


# --- schema /2 case groups -------------------------------------------------------------

SWEEP4: tuple[str, ...] = tuple(f"f{sh}:4:{v:x}" for sh in range(0, 64, 4) for v in range(16))
_CODE_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"


def _token(c: CaseResult) -> str:
    if c.request is None:
        return f"={c.value:x}"
    v = parse_value(c.request)
    if isinstance(v, FieldValue):
        return "d" if v == UNCHANGED else f"f{v.shift}:{v.width}:{v.value:x}"
    if isinstance(v, MaskedValue):
        return f"m{v.mask:x}:{v.bits:x}"
    return f"={v:x}"


_TOKENS: dict[str, Value] = {}


def _parse_token(t: str) -> Value:
    v = _TOKENS.get(t)
    if v is None:
        kind, body = t[0], t[1:]
        if kind == "=":
            v = int(body, 16)
        elif kind == "d" and not body:
            v = UNCHANGED
        elif kind == "f":
            sh, w, fv = body.split(":")
            v = FieldValue(int(sh), int(w), int(fv, 16))
        elif kind == "m":
            m, b = body.split(":")
            v = MaskedValue(int(m, 16), int(b, 16))
        else:
            raise ValueError(f"bad case token {t!r}")
        if len(_TOKENS) < 100_000:
            _TOKENS[t] = v
    return v


def _compress(tokens: list[str]) -> list[str]:
    out: list[str] = []
    i, n = 0, len(tokens)
    while i < n:
        if tokens[i] == SWEEP4[0] and tuple(tokens[i : i + len(SWEEP4)]) == SWEEP4:
            out.append("sweep4")
            i += len(SWEEP4)
        else:
            out.append(tokens[i])
            i += 1
    return out


def _encode_groups(rec: Recording) -> tuple[dict[str, object], list[dict[str, object]]]:
    codes: dict[Errno, str] = {0: "0"}
    groups: list[dict[str, object]] = []
    cur_key: tuple[object, ...] | None = None
    tokens: list[str] = []
    errs: list[str] = []
    values: list[str] = []
    explicit = False
    head: dict[str, object] = {}

    def close() -> None:
        if cur_key is None:
            return
        g = dict(head)
        g["requests"] = _compress(tokens)
        g["errnos"] = "".join(errs)
        if explicit:
            g["values"] = list(values)
        groups.append(g)

    for c in rec.cases:
        key = (c.features, c.reg, c.encoding, c.after_run, c.seq)
        if key != cur_key:
            close()
            cur_key, tokens, errs, values, explicit = key, [], [], [], False
            head = {"features": feature_key(c.features), "reg": c.reg, "encoding": list(c.encoding)}
            if c.after_run:
                head["after_run"] = True
            if c.seq is not None:
                head["seq"] = c.seq
        tok = _token(c)
        tokens.append(tok)
        values.append(hex64(c.value))
        v = _parse_token(tok)
        if isinstance(v, (FieldValue, MaskedValue)) and v.apply(rec.default_of(c.features, c.reg) or 0) != c.value:
            explicit = True
        if c.errno not in codes:
            codes[c.errno] = _CODE_CHARS[len(codes) - 1]
        errs.append(codes[c.errno])
    close()
    return {ch: e for e, ch in codes.items() if ch != "0"}, groups


def _decode_groups(rec: Recording, codes: dict[str, Errno], groups: list[dict[str, object]]) -> list[CaseResult]:
    table: dict[str, Errno] = {"0": 0, **codes}
    out: list[CaseResult] = []
    for g in groups:
        features = features_of_key(str(g["features"]))
        reg = str(g["reg"])
        enc = _encoding(g["encoding"])
        after_run = bool(g.get("after_run", False))
        seq = g.get("seq")
        seq = None if seq is None else str(seq)
        raw = g["requests"]
        assert isinstance(raw, list)
        tokens: list[str] = []
        for t in raw:
            if t == "sweep4":
                tokens.extend(SWEEP4)
            else:
                tokens.append(str(t))
        errs = str(g["errnos"])
        explicit = g.get("values")
        if len(errs) != len(tokens) or (explicit is not None and len(explicit) != len(tokens)):  # type: ignore[arg-type]
            raise ValueError(f"group {reg}: {len(tokens)} requests, {len(errs)} errnos")
        default = rec.default_of(features, reg) or 0
        for i, t in enumerate(tokens):
            v = _parse_token(t)
            if explicit is not None:
                value = int(str(explicit[i]), 16)  # type: ignore[index]
            elif isinstance(v, (FieldValue, MaskedValue)):
                value = v.apply(default)
            else:
                value = v
            request = value_json(v) if isinstance(v, (FieldValue, MaskedValue)) else None
            out.append(CaseResult(reg, enc, value, features, after_run, table[errs[i]], request, seq))
    return out


def save_recording(recording: Recording, path: Path) -> None:
    """Write gzip JSON (deterministic bytes: mtime 0, compact separators)."""
    data = json.dumps(recording.to_json(), separators=(",", ":")).encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=9, mtime=0) as f:
        f.write(data)
    tmp.replace(path)


def load_recording(path: Path | str, cases: bool = True, sequences_only: bool = False) -> Recording:
    """Load a ``.json.gz`` (or plain ``.json``) recording; ``cases=False`` leaves out the cases,
    ``sequences_only`` all but those of sequences (migrations)."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as e:
        raise OracleError(f"cannot read recording {p}: {e.strerror}") from None
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as e:
        raise OracleError(f"{p}: not JSON: {e.msg}") from None
    return Recording.from_json(data, cases, sequences_only)


def _case_key(c: CaseResult) -> tuple[object, ...]:
    return (c.encoding, c.features, c.after_run, c.value)


def compare_recordings(expected: Recording, actual: Recording, limit: int = 50) -> list[str]:
    """Differences between two recordings of the same kernel/CPU (empty = they agree).

    Compares the kernel release, each common feature set's init errno, defaults and
    writable masks, and the errno of every case of ``actual`` that ``expected`` also has.
    """
    diffs: list[str] = []
    if expected.kernel.get("release") != actual.kernel.get("release"):
        diffs.append(f"kernel release {expected.kernel.get('release')} != {actual.kernel.get('release')}")
    if expected.qemu.get("cpu") != actual.qemu.get("cpu"):
        diffs.append(f"QEMU CPU {expected.qemu.get('cpu')} != {actual.qemu.get('cpu')}")
    for key, a in actual.feature_sets.items():
        e = expected.feature_sets.get(key)
        if e is None:
            continue
        if e.init_errno != a.init_errno:
            diffs.append(f"[{key}] init errno {e.init_errno} != {a.init_errno}")
        for reg in sorted(set(e.defaults) | set(a.defaults)):
            if e.defaults.get(reg, -1) != a.defaults.get(reg, -1):
                diffs.append(f"[{key}] default {reg}: {e.defaults.get(reg)!r} != {a.defaults.get(reg)!r}")
        for reg in sorted(set(e.writable_masks) | set(a.writable_masks)):
            if e.writable_masks.get(reg, 0) != a.writable_masks.get(reg, 0):
                diffs.append(
                    f"[{key}] writable mask {reg}: {e.writable_masks.get(reg, 0):#x}"
                    f" != {a.writable_masks.get(reg, 0):#x}"
                )
    index = {_case_key(c): c for c in expected.cases}
    matched = 0
    for c in actual.cases:
        old = index.get(_case_key(c))
        if old is None:
            continue
        matched += 1
        if old.errno != c.errno:
            diffs.append(
                f"[{feature_key(c.features)}] {c.reg} := {hex64(c.value)}"
                f"{' (after run)' if c.after_run else ''}: errno {old.errno} != {c.errno}"
            )
    if actual.cases and not matched:
        diffs.append("no case of the new recording is in the expected one")
    if len(diffs) > limit:
        diffs = [*diffs[:limit], f"... and {len(diffs) - limit} more"]
    return diffs
