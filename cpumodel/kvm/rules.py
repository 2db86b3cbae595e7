"""Loading the per-kernel KVM rule files (``cpumodel/data/kvm/<X.Y>.json``).

The files are written by ``tools/gen_kvm.py`` from a Linux source tree; their
format is described in ``cpumodel/data/kvm/README.md``.  This module only reads
them and indexes them; the semantics live in :mod:`cpumodel.kvm.model`.
"""

from __future__ import annotations

import gzip
import json
import os
import re
from dataclasses import field
from functools import cache
from pathlib import Path
from typing import Any

from cpumodel.records import record

DATA_DIR = Path(__file__).resolve().parent.parent / "data" / "kvm"

Encoding = tuple[int, int, int, int, int]

_GENERIC_NAME = re.compile(r"S(\d)_(\d)_C?(\d+)_C?(\d+)_(\d)", re.I)


class _Bits:
    """A bit range ``width`` bits wide at ``shift`` (the dataclasses below declare both)."""

    shift: int
    width: int

    @property
    def mask(self) -> int:
        return ((1 << self.width) - 1) << self.shift


@record(frozen=True)
class FieldRule(_Bits):
    """One ``arm64_ftr_bits`` entry of the register (cpufeature.c)."""

    name: str
    shift: int
    width: int
    signed: bool
    policy: str  # the policy KVM applies (kvm_arm64_ftr_safe_value() overrides included)
    safe_val: int
    checked: bool  # wholly inside the writable mask, so arm64_check_features() looks at it
    source: str

@record(frozen=True)
class LayoutField(_Bits):
    """A field of the register as the kernel's sysreg table lays it out."""

    name: str
    shift: int
    width: int
    signed: bool
    values: dict[str, int]

@record(frozen=True)
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

    def field_name_for_bits(self, mask: int) -> str:
        for f in self.layout:
            if f.mask & mask:
                return f.name
        lo = (mask & -mask).bit_length() - 1
        hi = mask.bit_length() - 1
        return f"bits[{hi}:{lo}]" if hi != lo else f"bit[{lo}]"


@record(frozen=True)
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

    @property
    def writable_id_regs(self) -> bool:
        """False before Linux 6.7: KVM accepts only its own value of an ID register."""
        return bool(self.raw.get("writable_id_regs", True))

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


# --------------------------------------------------------------------------- #
# Which rule set: built-in lines (data/kvm/index.json) and imported ones (XDG data dir)
# --------------------------------------------------------------------------- #

IMPORT_HOWTO = ("get that kernel's source tree (e.g. 'apt-get source linux' on the distribution, or a "
                "kernel.org tarball) and run: cpumodel kernels import /path/to/linux-{ver} --name {name}")


class KernelNotModelled(KeyError):
    """No rule set for a requested kernel; ``str()`` says why, ``hint`` what to do."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


@record(frozen=True)
class KernelEntry:
    """One line of ``cpumodel kernels``: a built-in line (modelled or not) or an imported rule set."""

    name: str                 # what --kernel takes: "7.2", or an imported set's name
    line: str                 # X.Y
    release: str              # the release the rules come from ("7.2.13")
    modelled: bool
    source: str = ""          # source package / tree
    why: str = ""             # unmodelled: why
    path: Path | None = None
    imported: bool = False
    same_rules_as: str = ""
    writable_id_regs: bool = True
    note: str = ""            # a known limit of the line's rules


def _version_key(v: str) -> tuple[int, ...]:
    from cpumodel.kvm.lines import version_key

    return version_key(v)


def user_kernels_dir() -> Path:
    """Where ``cpumodel kernels import`` stores rule sets: $XDG_DATA_HOME/cpumodel/kernels
    (default ~/.local/share/cpumodel/kernels)."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "cpumodel" / "kernels"


@cache
def _index() -> tuple[KernelEntry, ...]:
    data = json.loads((DATA_DIR / "index.json").read_text())
    return tuple(
        KernelEntry(e["line"], e["line"], e["release"], e["modelled"], e.get("source_package", ""), e.get("why", ""),
                    DATA_DIR / e["file"] if e.get("file") else None, False, e.get("same_rules_as", ""),
                    e.get("writable_id_regs", True), e.get("note", ""))
        for e in data["lines"])


def imported_kernels() -> list[KernelEntry]:
    """Rule sets imported by the user (each ``<name>.json.gz`` has a ``<name>.meta.json`` beside it)."""
    out = []
    d = user_kernels_dir()
    for meta in sorted(d.glob("*.meta.json")) if d.is_dir() else []:
        try:
            m = json.loads(meta.read_text())
        except (OSError, ValueError):
            continue
        path = meta.with_name(meta.name.removesuffix(".meta.json") + ".json.gz")
        if path.exists():
            out.append(KernelEntry(m["name"], m["line"], m["release"], True, m.get("source", ""),
                                   path=path, imported=True, writable_id_regs=m.get("writable_id_regs", True)))
    return out


def catalogue() -> list[KernelEntry]:
    """Every built-in line (oldest first), then the imported rule sets."""
    return [*_index(), *imported_kernels()]


def kernels() -> list[str]:
    """Built-in kernel lines with a rule set (``"6.12"``, ...), oldest first."""
    return [e.name for e in _index() if e.modelled]


def resolve(version: str) -> KernelEntry:
    """The rule set ``--kernel version`` means: an imported set by name; else the built-in line
    ``X.Y`` of ``X.Y[.Z[-suffix]]`` (or an imported set of that release or line). Raises
    :class:`KernelNotModelled` with what to do for an unmodelled, unknown or too-new kernel."""
    v = version.strip()
    imported = imported_kernels()
    for e in imported:
        if e.name == v:
            return e
    try:
        key = _version_key(v)
    except ValueError:
        names = ", ".join([*kernels(), *(e.name for e in imported)])
        raise KernelNotModelled(f"no KVM rules for kernel {version!r}", f"known: {names} (see 'cpumodel kernels')") \
            from None
    line = f"{key[0]}.{key[1]}"
    full = ".".join(str(x) for x in key)
    exact = [e for e in imported if e.release == full and len(key) > 2]
    if exact:
        return exact[0]
    builtin = {e.line: e for e in _index()}
    e = builtin.get(line)
    if e is not None and e.modelled:
        return e
    mine = [e for e in imported if e.line == line]
    if mine:
        return mine[0]
    name = line if len(key) == 2 else full
    howto = IMPORT_HOWTO.format(ver=full if len(key) > 2 else f"{line}.N", name=line)
    if e is not None:
        raise KernelNotModelled(f"no KVM rules for kernel {version!r}: Linux {line} is recorded but not modelled: "
                                f"{e.why}", howto)
    newest = max((x for x in _index()), key=lambda x: _version_key(x.line))
    what = f"no KVM rules for kernel {version!r}: Linux {name}"
    if key[:2] > _version_key(newest.line)[:2]:
        raise KernelNotModelled(f"{what} is newer than every modelled kernel (newest: {newest.line}); its rules "
                                "are not guessed from an older line", howto)
    raise KernelNotModelled(f"{what} has no built-in KVM rules (built in: {', '.join(kernels())})", howto)


def pick_kernel(kernel: str | None, recorded: str = "", where: str = "the host profile") -> str | None:
    """The kernel a command uses: ``--kernel`` as given; ``host`` or no ``--kernel`` means the release
    the host profile recorded (``kernel_release``, written by ``cpumodel capture``), when it has one."""
    if kernel is not None and kernel.strip().lower() == "host":
        if not recorded:
            raise KernelNotModelled(f"--kernel host: {where} records no kernel_release",
                                    "give --host HOST.yaml written by 'cpumodel capture' on the KVM host (it "
                                    "records the running kernel's release), or --kernel X.Y")
        return recorded
    if kernel is None and recorded:
        try:
            resolve(recorded)
        except KernelNotModelled as exc:
            raise KernelNotModelled(f"{where} runs Linux {recorded} (kernel_release): {exc}",
                                    f"{exc.hint}; or choose a rule set with --kernel X.Y") from None
        return recorded
    return kernel


_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,63}")


def import_kernel(tree: Path, name: str | None = None, *, force: bool = False) -> tuple[KernelEntry, str]:
    """``cpumodel kernels import``: generate the rule set of the Linux source tree ``tree`` (with its
    line's overlay, else the nearest older line's: :func:`cpumodel.kvm.gen.overlay_for`), check it
    (every overlay quote found in this tree, every condition and step known to the model), and
    store it in :func:`user_kernels_dir`. Returns the entry and the overlay line used. Raises
    :class:`KernelNotModelled` (a ``KeyError``) with what is missing."""
    from cpumodel.kvm import gen

    try:
        _, full = gen.read_version(tree) if (tree / "Makefile").exists() else ("", "")
        overlay = gen.overlay_for(full or "0.0")
        data = gen.generate(tree, overlay)
        gen.validate(data)
    except (gen.GenError, OSError, ValueError) as exc:
        raise KernelNotModelled(f"cannot import {tree}: {exc}",
                                "the tree must be a Linux source tree with arch/arm64; a quote that is missing "
                                "means this kernel's KVM code differs from the overlay's line: describe it in "
                                "a new overlay (cpumodel/data/kvm/overlays/README.md)") from None
    name = name or data["kernel_full"]
    if not _NAME.fullmatch(name):
        raise KernelNotModelled(f"bad name {name!r} for an imported kernel", "letters, digits, '.', '_', '+', '-'")
    if name in kernels():
        raise KernelNotModelled(f"{name!r} is a built-in kernel line", "pick another --name")
    d = user_kernels_dir()
    path, meta = d / f"{name}.json.gz", d / f"{name}.meta.json"
    if meta.exists() and not force:
        raise KernelNotModelled(f"an imported kernel {name!r} exists ({path})", "use --force to replace it")
    origin = (tree / ".origin").read_text(errors="replace").strip() if (tree / ".origin").exists() else ""
    source = f"{tree.resolve()}" + (f" ({origin})" if origin else "") + f"; overlay of line {overlay}"
    data["kernel"] = name
    data["source_package"] = source
    data["imported"] = {"tree": str(tree.resolve()), "overlay": overlay}
    gen.write_rules(data, d, name)
    m = {"name": name, "line": ".".join(data["kernel_full"].split(".")[:2]), "release": data["kernel_full"],
         "source": source, "overlay": overlay, "writable_id_regs": data.get("writable_id_regs", True)}
    meta.write_text(json.dumps(m, indent=1) + "\n")
    load_kernel.cache_clear()
    return next(e for e in imported_kernels() if e.name == name), overlay


@cache
def load_kernel(version: str) -> KernelRules:
    """The rules of one kernel: ``"6.12"``, a full release ``"6.12.117"`` (which picks the 6.12
    line) or an imported set's name.  Raises :class:`KernelNotModelled` (a ``KeyError``)."""
    e = resolve(version)
    assert e.path is not None
    return parse_rules(json.loads(gzip.decompress(e.path.read_bytes())))


RECORDINGS = Path(__file__).resolve().parents[2] / "tests" / "oracle" / "recordings"


def _recordings() -> dict[str, list[str]]:
    """line -> ["6.12.117 max", ...] from a source checkout's oracle recordings (empty when installed)."""
    out: dict[str, list[str]] = {}
    for p in sorted(RECORDINGS.glob("*.json.gz")) if RECORDINGS.is_dir() else []:
        release, _, cpu = p.name.removesuffix(".json.gz").partition("_")
        try:
            key = _version_key(release)
        except ValueError:
            continue
        out.setdefault(f"{key[0]}.{key[1]}", []).append(f"{cpu}")
    return out


def describe_catalogue() -> list[str]:
    """The text of ``cpumodel kernels``."""
    entries = catalogue()
    recs = _recordings()
    default = kernels()[-1]
    lines = [f"KVM rule sets (--kernel X.Y, a release X.Y.Z of a line, an imported NAME, or 'host'; "
             f"default {default}):"]
    for e in entries:
        if e.imported:
            continue
        if e.modelled:
            what = f"Linux {e.release}  {e.source}"
            if e.same_rules_as:
                what += f"  (same rules as {e.same_rules_as})"
            if not e.writable_id_regs:
                what += ("  [ID registers not writable: KVM accepts only its own value, "
                         "no KVM_ARM_GET_REG_WRITABLE_MASKS]")
        else:
            what = f"not modelled: {e.why}"
        lines.append(f"  {e.name:6s} {what}")
        if e.note:
            lines.append(f"  {'':6s} note: {e.note}")
        if e.line in recs:
            lines.append(f"  {'':6s} oracle recordings ({RECORDINGS.name}/): {', '.join(recs[e.line])}")
    imported = [e for e in entries if e.imported]
    lines.append(f"Imported ({user_kernels_dir()}):" if imported else
                 f"Imported: none (cpumodel kernels import LINUX_SOURCE_TREE [--name NAME] stores one in "
                 f"{user_kernels_dir()})")
    for e in imported:
        lines.append(f"  {e.name:6s} Linux {e.release}  {e.source}")
    lines.append("Facts come from each kernel's arch/arm64/kvm/sys_regs.c, arch/arm64/kernel/cpufeature.c and "
                 "arch/arm64/tools/sysreg;")
    lines.append("tests/oracle/ holds recordings of the real kernels' verdicts that the model must match.")
    return lines
