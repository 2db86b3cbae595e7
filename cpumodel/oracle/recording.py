"""The recording format (gzip JSON, schema ``cpumodel-oracle-recording/1``) and its loader.

Top level::

    {"schema": "cpumodel-oracle-recording/1",
     "kernel": {"release", "version", "debian_package", "package_version"},
     "qemu": {"version", "cpu", "machine"},
     "feature_sets": {"<key>": {"features", "init_errno", "finalize_errno", "defaults",
                                "get_errno", "writable_masks", "run", "drift",
                                "restore_failures", "skipped_cases"}},
     "cases": [{"reg", "encoding", "value", "features", "after_run", "errno", "request"?}],
     "timing": {"boot_seconds", "probe_seconds", "total_seconds", "cases", "cases_per_second"},
     "probe": {...hello line: api_version, caps...}, "kernel_warnings": [...]}

Values and masks are "0x%016x" strings; errno is 0 or a name ("EINVAL"); ``request`` is the
case's value as asked (a field object or "default") when it was not absolute.
``<key>`` is "none" or the features joined by "+" (see cases.feature_key).
"""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass, field
from pathlib import Path

from cpumodel.oracle.cases import Case, FeatureSet, check_features, feature_key, parse_value, sorted_features
from cpumodel.oracle.errors import OracleError
from cpumodel.oracle.sysregs import Encoding, check_encoding

SCHEMA = "cpumodel-oracle-recording/1"

Errno = int | str


def hex64(v: int) -> str:
    return f"{v:#018x}"


@dataclass(frozen=True)
class CaseResult:
    """One KVM_SET_ONE_REG outcome."""

    reg: str
    encoding: Encoding
    value: int  # the 64-bit value actually written
    features: FeatureSet
    after_run: bool
    errno: Errno  # 0 or "EINVAL", "EBUSY", ...
    request: object = None  # the value as asked, if not absolute ({"field_shift":..} or "default")

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
        return d

    def to_case(self) -> Case:
        """The case that produced this result (field form kept, so it replays on any kernel)."""
        value = parse_value(self.request) if self.request is not None else self.value
        return Case(self.encoding, value, self.features, self.after_run)

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
    masks_errno: Errno = 0
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
            "features": sorted_features(self.features),
            "init_errno": self.init_errno,
            "finalize_errno": self.finalize_errno,
            "vgic_errno": self.vgic_errno,
            "imp_id_errno": self.imp_id_errno,
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
    schema: str = SCHEMA

    def feature_set(self, features: FeatureSet | str) -> FeatureSetRecord:
        key = features if isinstance(features, str) else feature_key(features)
        return self.feature_sets[key]

    def to_json(self) -> dict[str, object]:
        return {
            "schema": self.schema,
            "kernel": self.kernel,
            "qemu": self.qemu,
            "feature_sets": {k: v.to_json() for k, v in self.feature_sets.items()},
            "cases": [c.to_json() for c in self.cases],
            "timing": self.timing,
            "probe": self.probe,
            "kernel_warnings": self.kernel_warnings,
        }

    @classmethod
    def from_json(cls, d: object) -> Recording:
        if not isinstance(d, dict) or d.get("schema") != SCHEMA:
            got = d.get("schema") if isinstance(d, dict) else type(d).__name__
            raise OracleError(f"not an oracle recording (schema {got!r}, want {SCHEMA!r})")
        try:
            return cls(
                kernel=dict(d["kernel"]),
                qemu=dict(d["qemu"]),
                feature_sets={k: FeatureSetRecord.from_json(v) for k, v in d["feature_sets"].items()},
                cases=[CaseResult.from_json(c) for c in d["cases"]],
                timing=dict(d.get("timing") or {}),
                probe=dict(d.get("probe") or {}),
                kernel_warnings=list(d.get("kernel_warnings") or []),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise OracleError(f"malformed oracle recording: {e!r}") from None


def save_recording(recording: Recording, path: Path) -> None:
    """Write gzip JSON (deterministic bytes: mtime 0, compact separators)."""
    data = json.dumps(recording.to_json(), separators=(",", ":")).encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=9, mtime=0) as f:
        f.write(data)
    tmp.replace(path)


def load_recording(path: Path | str) -> Recording:
    """Load a ``.json.gz`` (or plain ``.json``) recording."""
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
    return Recording.from_json(data)


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
