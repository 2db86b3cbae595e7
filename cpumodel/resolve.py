"""Resolve step: ``Profile`` -> ``Model`` (final 64-bit values, and where each value came from).

Order, each layer over the previous one: the ``base:`` profile (resolved first, recursively),
then the ``arch:`` floor (the minimal field values the architecture version mandates, only
when there is no base), then ``registers:`` (raw values replace a register; field values
replace fields), then ``features:`` (+FEAT raises the defining fields, -FEAT lowers them and
turns off what depends on them).
"""

from __future__ import annotations

import os
from dataclasses import field
from pathlib import Path

from cpumodel import regdb
from cpumodel.errors import CpumodelError, Location
from cpumodel.profile import UNSEEN_EL0, Profile
from cpumodel.profile import load as load_profile
from cpumodel.records import record
from cpumodel.yamlsrc import shown

#: Longest base: chain followed before giving up.
MAX_BASE_DEPTH = 64


def _shipped() -> Path:
    """The profiles shipped with cpumodel: package data ``cpumodel/profiles/`` in an installed wheel,
    the repository's top-level ``profiles/`` in a source checkout (or an editable install)."""
    here = Path(__file__).resolve().parent
    installed = here / "profiles"
    return installed if installed.is_dir() else here.parent / "profiles"


#: Directory of the profiles shipped with cpumodel.
SHIPPED = _shipped()


@record
class Model:
    """A resolved CPU model: only the registers it specifies, with full 64-bit values."""

    name: str
    path: str
    values: dict[str, int] = field(default_factory=dict)
    # (register, field) -> where that field's value was set; (register, "") for a whole register.
    origin: dict[tuple[str, str], Location] = field(default_factory=dict)
    arch: str | None = None
    arch_loc: Location | None = None
    ignore: list[tuple[str, Location]] = field(default_factory=list)
    vcpu_features: frozenset[str] | None = None
    vcpu_loc: Location | None = None
    chain: list[str] = field(default_factory=list)
    notes: list[tuple[str, Location]] = field(default_factory=list)
    description: str = ""
    loc: Location | None = None
    role: str = "guest"
    base_role: str | None = None  # role of the immediate base profile, if any
    kernel_release: str = ""  # the host's kernel release (uname -r) the profile records, if any
    base_path: str | None = None
    kvm_caps: frozenset[str] | None = None  # KVM_ENABLE_CAP capabilities the VMM enables
    kvm_caps_loc: Location | None = None
    value_origin: str | None = None  # profile key origin: "cpu" | "kvm-defaults" | None (hand-made)
    vulnerabilities: dict[str, str] = field(default_factory=dict)  # sysfs vulnerabilities/<name> text
    firmware: dict[str, int] = field(default_factory=dict)  # KVM firmware pseudo-registers (kvm/firmware.py)
    firmware_loc: dict[str, Location] = field(default_factory=dict)
    host_fields: dict[str, int] = field(default_factory=dict)  # "REG.FIELD" -> raw host value KVM hides
    unseen: dict[str, int] = field(default_factory=dict)  # register -> mask of bits the capture could not see
    # system registers outside the CPU model the profiles give (MPIDR_EL1, ...): name -> where; ignored (P004)
    system_registers: dict[str, Location] = field(default_factory=dict)
    # Files whose values are facts, not choices: a real CPU (role: host) or KVM's own defaults
    # (origin: kvm-defaults). path -> what it is; findings on values set there are inherited.
    facts: dict[str, str] = field(default_factory=dict)
    # field_values() of the values and unseen masks it was computed from (rules ask for it many
    # times per model)
    _fields_memo: tuple[tuple[tuple[tuple[str, int], ...], tuple[tuple[str, int], ...]],
                        dict[tuple[str, str], int]] | None = field(
        default=None, init=False, repr=False, compare=False)

    def where(self, register: str, fieldname: str = "") -> Location | None:
        """The location that set a register field (or the register), best effort."""
        return (self.origin.get((register, fieldname)) or self.origin.get((register, ""))
                or self.loc)

    def field_values(self) -> dict[tuple[str, str], int]:
        """(register, field) -> unsigned value for every named field of every specified register, but
        the ``unseen`` ones: a field the capture could not see is unknown to every rule, not 0 (a new
        dict each time: callers may change it)."""
        key = (tuple(self.values.items()), tuple(self.unseen.items()))
        memo = self._fields_memo
        if memo is None or memo[0] != key:
            out: dict[tuple[str, str], int] = {}
            for name, value in key[0]:
                out.update(_decoded(name, value))
            for name, mask in key[1]:
                for f in regdb.load().registers[name].named_fields:
                    if f.mask & mask:
                        out.pop((name, f.name), None)
            memo = self._fields_memo = (key, out)
        return dict(memo[1])


#: (register, value) -> its named fields' values. Rules decode the same registers many times per
#: model, and profiles of one fleet share most register values; bounded (~2 MB), cleared when full.
_DECODED: dict[tuple[str, int], tuple[tuple[tuple[str, str], int], ...]] = {}
_DECODED_MAX = 1 << 14


def _decoded(name: str, value: int) -> tuple[tuple[tuple[str, str], int], ...]:
    hit = _DECODED.get((name, value))
    if hit is None:
        hit = tuple(((name, f.name), (value >> f.lsb) & ((1 << f.width) - 1))
                    for f in regdb.load().registers[name].named_fields)
        if len(_DECODED) >= _DECODED_MAX:
            _DECODED.clear()
        _DECODED[(name, value)] = hit
    return hit


def search_path(extra: list[str] | None = None) -> list[Path]:
    """Where ``base:`` names are looked up, after the profile's own directory: ``-I`` dirs,
    ``$CPUMODEL_PATH``, the shipped profiles."""
    dirs = [Path(p) for p in (extra or [])]
    env = os.environ.get("CPUMODEL_PATH")
    if env:
        dirs += [Path(p) for p in env.split(os.pathsep) if p]
    dirs.append(SHIPPED)
    return dirs


class Resolver:
    """Resolves profiles, caching each file's result so shared bases are read once per run.

    ``base:`` is untrusted: it resolves only to a ``.yaml``/``.yml`` file whose real path (symbolic
    links followed) lies inside the search path: the directory tree of the profile named on the
    command line, the ``-I`` directories, ``$CPUMODEL_PATH`` and the shipped profiles. Absolute
    paths, and relative ones that leave those trees, are refused unless ``allow_outside`` (the
    CLI's ``--allow-base-outside``). A ``base:`` without ``/`` or a YAML suffix is a name: a file
    ``NAME.yaml`` in the search path, else the profile whose ``name:`` is NAME.
    """

    def __init__(self, paths: list[str] | None = None, allow_outside: bool = False) -> None:
        self.paths = search_path(paths)
        self.allow_outside = allow_outside
        self._cache: dict[str, Model] = {}
        self._roots = [_real(d) for d in self.paths]
        self._names: dict[Path, dict[str, list[Path]]] = {}  # directory -> profile name: -> files
        self._real_dirs: dict[str, str] = {}  # directory as written -> its real path (see _realpath)
        self._bases: dict[tuple[str, Path, str | None], str] = {}  # see find_base

    def _realpath(self, path: str) -> str:
        """``os.path.realpath(path)``, each directory's real path looked up once per run: the real
        path of ``DIR/NAME`` is that of ``DIR`` joined with ``NAME`` unless ``NAME`` is a symbolic link
        (then resolved in full), ``.``, ``..`` or empty (then ``os.path.realpath`` does it all)."""
        head, tail = os.path.split(path)
        if tail in ("", ".", ".."):
            return os.path.realpath(path)
        real = self._real_dirs.get(head)
        if real is None:
            if len(self._real_dirs) >= 4096:
                self._real_dirs.clear()
            real = self._real_dirs[head] = os.path.realpath(head or os.curdir)
        full = os.path.join(real, tail)
        return os.path.realpath(full) if os.path.islink(full) else full

    def _inside(self, real: Path, top: Path) -> bool:
        return any(real.is_relative_to(r) for r in [top, *self._roots] if r is not None)

    def find_base(self, ref: str, profile: Profile, where: Location, top: str | None = None) -> str:
        """The display path of the file ``base: ref`` of ``profile`` names (``top``: the real path of the
        profile named on the command line, whose directory tree is searched). Found once per run for
        each (ref, directory, top): the files of a set share their bases."""
        here = Path(self._realpath(profile.path)).parent
        key = (ref, here, top)
        found = self._bases.get(key)
        if found is None:  # a refusal raises every time: it is not memoised
            found = self._find_base(ref, here, _real(Path(top).parent) if top else here, where)
            if len(self._bases) >= 4096:
                self._bases.clear()
            self._bases[key] = found
        return found

    def _find_base(self, ref: str, here: Path, top_dir: Path | None, where: Location) -> str:
        looks_like_path = "/" in ref or ref.endswith((".yaml", ".yml"))
        if looks_like_path:
            if os.path.isabs(ref) and not self.allow_outside:
                raise CpumodelError(f"base: {shown(ref)} is an absolute path, which is not allowed", where,
                                    hint="name a profile (searched beside this file, in -I dirs, $CPUMODEL_PATH "
                                         "and the shipped profiles) or a relative path; "
                                         "--allow-base-outside lifts this")
            candidates = [here / ref]
        else:
            candidates = [d / f"{ref}{ext}" for d in [here, *self.paths] for ext in (".yaml", ".yml")]
        found = next((c for c in candidates if _is_file(c)), None)
        if found is None and not looks_like_path:
            found = self._by_name(ref, [here, *self.paths], where)
        if found is not None:
            if not self.allow_outside:
                real = _real(found)
                if real is None or real.suffix not in (".yaml", ".yml") or not self._inside(real, top_dir):
                    raise CpumodelError(f"base: {shown(ref)} leads outside the search path", where,
                                        hint="a base must be a .yaml/.yml file under this profile's directory, "
                                             "an -I dir, $CPUMODEL_PATH or the shipped profiles; "
                                             "--allow-base-outside lifts this")
            return _display_path(found)
        dirs = sorted({_short(os.path.normpath(c.parent)) for c in candidates})
        raise CpumodelError(f"base profile {shown(ref)} not found", where, hint=f"looked in {', '.join(dirs)}")

    def _by_name(self, name: str, dirs: list[Path], where: Location) -> Path | None:
        """The profile whose ``name:`` is ``name``, in the first directory that has one."""
        for d in dirs:
            index = self._names.get(d)
            if index is None:
                index = self._names[d] = _name_index(d)
            hits = index.get(name, [])
            if len(hits) > 1:
                raise CpumodelError(f"base: {shown(name)} is the name: of several profiles in {_short(str(d))}: "
                                    + ", ".join(p.name for p in hits[:5]), where)
            if hits:
                return hits[0]
        return None

    def resolve_file(self, path: str) -> Model:
        return self._resolve(path, [])

    def _resolve(self, path: str, stack: list[str]) -> Model:
        key = self._realpath(path)
        cached = self._cache.get(key)
        if cached is not None and (stack or cached.path == path):  # a file named as given: its findings
            return cached                                            # say its path as the user spelt it
        prof = load_profile(path, referenced=bool(stack))
        model = self.resolve_profile(prof, [*stack, key])
        if stack:  # only bases are cached: a run over many files keeps no model it does not need
            self._cache[key] = model
        return model

    def resolve_profile(self, prof: Profile, stack: list[str] | None = None) -> Model:
        stack = stack or [self._realpath(prof.path)]
        db = regdb.load()
        model = Model(name=prof.name, path=prof.path, loc=prof.loc, description=prof.description, role=prof.role,
                      kernel_release=prof.kernel_release)
        if prof.base:
            self._inherit(prof, model, stack)
        model.value_origin = prof.origin[0] if prof.origin else ("cpu" if prof.role == "host" else None)
        if model.value_origin is not None:
            model.facts[self._realpath(prof.path)] = _what(model)
        if prof.arch:
            _apply_arch(prof, model, db)
        _apply_registers(prof, model, db)
        if prof.features:
            self._apply_features(prof, model)
        _apply_vm_facts(prof, model, db)
        model.system_registers.update(prof.system_registers)
        model.ignore += prof.ignore
        return model

    def _inherit(self, prof: Profile, model: Model, stack: list[str]) -> None:
        """Start ``model`` from its resolved base (a copy of everything a base passes on)."""
        assert prof.base is not None
        ref, where = prof.base
        base_path = self.find_base(ref, prof, where, top=stack[0])
        real = self._realpath(base_path)
        if real in stack:
            cycle = " -> ".join(Path(p).name for p in [*stack[stack.index(real):], real])
            raise CpumodelError(f"base cycle: {cycle}", where)
        if len(stack) >= MAX_BASE_DEPTH:
            raise CpumodelError(f"base chain longer than {MAX_BASE_DEPTH} profiles", where)
        base = self._resolve(base_path, stack)
        model.values = dict(base.values)
        model.origin = dict(base.origin)
        model.arch, model.arch_loc = base.arch, base.arch_loc
        model.vcpu_features, model.vcpu_loc = base.vcpu_features, base.vcpu_loc
        model.ignore = list(base.ignore)
        model.chain = [*base.chain, base.name]
        model.base_role, model.base_path = base.role, base.path
        model.notes = list(base.notes)
        model.kvm_caps, model.kvm_caps_loc = base.kvm_caps, base.kvm_caps_loc
        model.vulnerabilities = dict(base.vulnerabilities)
        model.firmware, model.firmware_loc = dict(base.firmware), dict(base.firmware_loc)
        model.host_fields = dict(base.host_fields)
        model.unseen = dict(base.unseen)
        model.system_registers = dict(base.system_registers)
        model.facts = dict(base.facts)

    @staticmethod
    def _apply_features(prof: Profile, model: Model) -> None:
        db = regdb.load()
        fm = _features()
        for feat, on, where in prof.features:
            try:
                changes = fm.force(feat, on, model.field_values())
            except (KeyError, ValueError) as e:
                raise CpumodelError(str(e.args[0]) if e.args else f"cannot set {feat}", where) from None
            for (reg, fname), fv in changes.items():
                r = db.registers[reg]
                model.values[reg] = r.field(fname).put(model.values.get(reg, 0), fv)
                model.origin[(reg, fname)] = where


def _apply_arch(prof: Profile, model: Model, db: regdb.RegisterDB) -> None:
    """``arch:``: the version asserted; without a base, its fields' floors are the starting values."""
    assert prof.arch is not None
    text, where = prof.arch
    fm = _features()
    try:
        model.arch = fm.version_name(text)
    except (KeyError, ValueError) as e:
        # the feature model's message names the version and suggests close ones
        raise CpumodelError(str(e.args[0]) if e.args else f"unknown architecture version {shown(text)}",
                            where) from None
    model.arch_loc = where
    if not prof.base:
        for (reg, fname), fv in fm.version_floor(model.arch).items():
            f = db.registers[reg].field(fname)
            cur = model.values.get(reg, 0)
            model.values[reg] = f.put(cur, max(f.get(cur), fv))
            model.origin[(reg, fname)] = where


def _apply_registers(prof: Profile, model: Model, db: regdb.RegisterDB) -> None:
    """``registers:``: a raw value replaces the register (and its origins); fields are put one by one."""
    inherited: dict[str, list[tuple[str, str]]] = {}  # register -> its origins set before this profile's
    for key in model.origin:
        inherited.setdefault(key[0], []).append(key)
    for name, spec in prof.registers.items():
        reg = db.registers[name]
        if spec.raw is not None:
            model.values[name] = spec.raw
            model.unseen.pop(name, None)
            for key in inherited.get(name, ()):  # a register appears once in registers: (duplicates are refused)
                del model.origin[key]
            model.origin[(name, "")] = spec.loc
        else:
            value = model.values.get(name, reg.res1_mask)
            if name not in model.values:
                model.origin[(name, "")] = spec.loc
            for fv in spec.fields.values():
                f = reg.field(fv.field)
                value = f.put(value, fv.value)
                model.origin[(name, fv.field)] = fv.loc
                if name in model.unseen:
                    model.unseen[name] &= ~f.mask
            model.values[name] = value


def _apply_vm_facts(prof: Profile, model: Model, db: regdb.RegisterDB) -> None:
    """vCPU features, VM capabilities, host vulnerabilities and firmware, hidden host fields, unseen fields."""
    if prof.vcpu_features is not None:
        model.vcpu_features = frozenset(f for f, _ in prof.vcpu_features)
        model.vcpu_loc = prof.vcpu_features[0][1] if prof.vcpu_features else prof.loc
    if prof.kvm_caps is not None:
        model.kvm_caps = frozenset(c for c, _ in prof.kvm_caps)
        model.kvm_caps_loc = prof.kvm_caps[0][1] if prof.kvm_caps else prof.loc
    model.vulnerabilities.update({k: v for k, (v, _) in prof.vulnerabilities.items()})
    for k, (v, where) in prof.firmware.items():
        model.firmware[k], model.firmware_loc[k] = v, where
    for name, spec in prof.host_registers.items():
        for fv in spec.fields.values():
            model.host_fields[f"{name}.{fv.field}"] = fv.value
    for name, (fields, _) in prof.unseen.items():
        if name == UNSEEN_EL0:  # this file's registers were read by MRS at EL0 under Linux
            from cpumodel import el0

            krules = el0.el0_rules(prof.kernel_release or model.kernel_release)
            hidden = el0.el0_hidden(list(prof.registers), krules)
            for rname, fnames in hidden.items():
                reg = db.registers[rname]
                for fname in fnames:
                    if (rname, fname) not in _set_by_field(prof, rname):
                        model.unseen[rname] = model.unseen.get(rname, 0) | reg.field(fname).mask
            continue
        reg = db.registers[name]
        for fname in fields:
            model.unseen[name] = model.unseen.get(name, 0) | reg.field(fname).mask
    model.unseen = {k: v for k, v in model.unseen.items() if v}


def _set_by_field(prof: Profile, name: str) -> set[tuple[str, str]]:
    """(register, field) pairs the profile sets field by field (not seen by a dump: written)."""
    spec = prof.registers.get(name)
    return {(name, f) for f in spec.fields} if spec is not None and spec.raw is None else set()


def _what(model: Model) -> str:
    """What a profile whose values are facts is, for 'inherited from ...' messages."""
    if model.value_origin == "kvm-defaults":
        return "KVM's own defaults (origin: kvm-defaults)"
    return "a real CPU (role: host)"


def _short(text: str, limit: int = 120) -> str:
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def _real(p: Path) -> Path | None:
    try:
        return Path(os.path.realpath(p))
    except (OSError, ValueError):
        return None


def _name_index(d: Path) -> dict[str, list[Path]]:
    """``name:`` -> files, for the profiles directly in ``d`` (files that do not load are skipped)."""
    import yaml

    from cpumodel.yamlsrc import MAX_BYTES

    out: dict[str, list[Path]] = {}
    try:
        files = sorted(p for p in d.iterdir() if p.suffix in (".yaml", ".yml"))
    except OSError:
        return out
    for p in files:
        try:
            if not p.is_file() or p.stat().st_size > MAX_BYTES:
                continue
            # only the top-level name: is needed; a full load of every file would cost far more
            for line in p.read_text(encoding="utf-8").splitlines():
                if line.startswith("name:"):
                    value = yaml.safe_load(line[5:])
                    if isinstance(value, str):
                        out.setdefault(value, []).append(p)
                    break
        except (OSError, UnicodeError, yaml.YAMLError):
            continue
    return out


def _is_file(p: Path) -> bool:
    """Path.is_file that is False, not an exception, for names too long or otherwise unusable."""
    try:
        return p.is_file()
    except (OSError, ValueError):
        return False


def _features():  # type: ignore[no-untyped-def]
    from cpumodel.features import FeatureModel

    return FeatureModel.load()


def resolve(path: str, paths: list[str] | None = None) -> Model:
    return Resolver(paths).resolve_file(path)


def _display_path(p: Path) -> str:
    """A path for messages: relative to the working directory when below it."""
    try:
        return str(p.resolve().relative_to(Path.cwd()))
    except (ValueError, OSError, RuntimeError):  # not below it; no working directory (deleted); a loop
        return str(p)

