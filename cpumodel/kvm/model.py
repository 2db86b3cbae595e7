"""A pure-Python model of KVM/arm64's verdict on ``KVM_SET_ONE_REG`` for ID registers.

It follows the kernel's own path (``kvm_sys_reg_set_user`` -> visibility ->
``set_user`` handler -> ``set_id_reg`` -> ``arm64_check_features``) step by step,
driven by the data in :mod:`cpumodel.kvm.rules`; every conclusion names the line
of the kernel it comes from.

Host facts that are not known are never guessed.  A fact KVM needs and the caller
did not give (the host's sanitised value of a field, whether the host is affected
by Spectre-v2, ...) makes the model evaluate every possibility; when they end
differently the verdict is ``depends_on_host`` and says on what.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import field, replace
from functools import lru_cache
from typing import Any

from cpumodel.kvm.rules import Encoding, KernelRules, RegisterRules
from cpumodel.records import record

MASK64 = (1 << 64) - 1

ACCEPTED = "accepted"
REJECTED = "rejected"
DEPENDS = "depends_on_host"
UNMODELLED = "unmodelled"


# --------------------------------------------------------------------------- #
# Results
# --------------------------------------------------------------------------- #

@record(frozen=True)
class FieldVerdict:
    """What KVM concluded about one field of the written value."""

    field: str
    shift: int
    width: int
    asked: int
    host: int | None  # the host's sanitised value of the field, when known
    limit: int | None  # KVM's limit for the field, when known
    policy: str | None  # FTR_* policy applied, or None for "must equal the limit"
    ok: bool | None  # None: depends on the host
    reason: str
    source: str


@record(frozen=True)
class Verdict:
    """KVM's answer to one ``KVM_SET_ONE_REG``.

    ``errno`` is ``None`` when the write is accepted, else ``"EINVAL"``,
    ``"EBUSY"``, ``"ENOENT"``... ``status`` is one of ``accepted``, ``rejected``,
    ``depends_on_host`` (then ``errno`` is ``None`` and ``outcomes`` lists what
    each possibility gives) or ``unmodelled``.
    """

    reg: str
    value: int
    status: str
    errno: str | None
    reason: str
    source: str
    fields: tuple[FieldVerdict, ...] = ()
    stored: int | None = None  # the value KVM keeps (after its rewrites), when accepted
    depends_on: tuple[str, ...] = ()
    outcomes: tuple[tuple[str, str | None], ...] = ()  # (assumption, errno) when depends_on_host
    assumptions: tuple[str, ...] = ()

    @property
    def accepted(self) -> bool:
        return self.status == ACCEPTED

    @property
    def errno_or_zero(self) -> str | int:
        """The errno as the oracle recordings write it: 0 when accepted."""
        return 0 if self.errno is None else self.errno

    @property
    def failing_fields(self) -> tuple[FieldVerdict, ...]:
        return tuple(f for f in self.fields if f.ok is False)


class HostDependent(ValueError):
    """A value that cannot be computed without more facts about the host."""


class _Fork(Exception):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


class _Unmodelled(Exception):
    pass


# --------------------------------------------------------------------------- #
# Values with unknown bits
# --------------------------------------------------------------------------- #

@record(frozen=True)
class Partial:
    """A 64-bit value of which only the bits in ``known`` are known."""

    value: int
    known: int = MASK64

    @staticmethod
    def unknown() -> Partial:
        return Partial(0, 0)

    def field(self, shift: int, width: int) -> int | None:
        m = ((1 << width) - 1) << shift
        if self.known & m != m:
            return None
        return (self.value & m) >> shift

    def with_field(self, shift: int, width: int, v: int | None) -> Partial:
        m = ((1 << width) - 1) << shift
        if v is None:
            return Partial(self.value & ~m, self.known & ~m)
        return Partial((self.value & ~m) | ((v << shift) & m), self.known | m)

    def clear(self, m: int) -> Partial:
        return Partial(self.value & ~m, self.known | m)

    @property
    def exact(self) -> int | None:
        return self.value if self.known == MASK64 else None


def _sext(v: int, width: int) -> int:
    return v - (1 << width) if v & (1 << (width - 1)) else v


# --------------------------------------------------------------------------- #
# Evaluation context
# --------------------------------------------------------------------------- #

@record(frozen=True)
class _Ctx:
    rules: KernelRules
    features: frozenset[str]
    host: Mapping[str, Partial]
    caps: Mapping[str, bool]
    assume: Mapping[str, bool] = field(default_factory=dict)
    limit_override: Mapping[str, Partial] | None = None

    def host_reg(self, name: str) -> Partial:
        return self.host.get(name, Partial.unknown())

    def host_field(self, spec: str) -> int | None:
        reg, fld = spec.split(".")
        r = self.rules.lookup(reg)
        if r is None:
            return None
        f = r.layout_field(fld)
        return self.host_reg(r.name).field(f.shift, f.width)

    def decide(self, key: str, value: bool | None) -> bool:
        """A yes/no fact: known, assumed on this branch, or a fork."""
        if value is not None:
            return value
        if key in self.assume:
            return self.assume[key]
        raise _Fork(key)

    def cond(self, c: Any) -> bool:
        """Evaluate a condition of the rule files (see data/kvm/README.md)."""
        if c is None:
            return True
        if isinstance(c, list):
            return all(self.cond(x) for x in c)
        if isinstance(c, dict):
            return self._compound(c)
        return self._named(c)

    def _compound(self, c: Mapping[str, Any]) -> bool:
        """``all``/``any``/``not`` of conditions, or a comparison of a host field (a fork when unknown)."""
        if "all" in c:
            return all(self.cond(x) for x in c["all"])
        if "any" in c:
            return any(self.cond(x) for x in c["any"])
        if "not" in c:
            return not self.cond(c["not"])
        if "host_field" in c:
            v = self.host_field(c["host_field"])
            key = "host " + _describe_cmp(c)
            return self.decide(key, None if v is None else _cmp(v, c))
        raise ValueError(f"bad condition {c!r}")

    def _named(self, name: str) -> bool:
        """A named condition of the rule set: a vCPU feature, or a host property (``_host_property``)."""
        spec = self.rules.conditions.get(name)
        if spec is None:
            raise ValueError(f"unknown condition {name!r} for Linux {self.rules.kernel}")
        if "feature" in spec:
            if spec.get("unmodelled") and spec["feature"] in self.features:
                raise _Unmodelled(f"{name}: {spec['meaning']}")
            return spec["feature"] in self.features
        return self._host_property(name, spec)

    def _host_property(self, name: str, spec: Mapping[str, Any]) -> bool:
        """A host property: a capability given, KVM's default, derived from host fields, assumed, or a fork."""
        short = name.split(".", 1)[1]
        if short in self.caps:
            return bool(self.caps[short])
        if "from_default" in spec and self.limit_override is not None:
            known = self._from_default(spec["from_default"])
            if known is not None:
                return known
        if "derive" in spec and self.host:
            derived = self._derive(spec["derive"])
            if (derived is True and not spec.get("derive_only_false")) or (
                    derived is False and not spec.get("derive_only_true")):
                return derived
        if "assume" in spec:
            return bool(spec["assume"])
        return self.decide(name, None)

    def _from_default(self, d: Mapping[str, Any]) -> bool | None:
        """A host fact KVM's own default value shows exactly (``from_default``), when the caller
        gave KVM's defaults (:func:`prepare_defaults`)."""
        assert self.limit_override is not None
        reg, fld = d["field"].split(".")
        lim = self.limit_override.get(reg)
        r = self.rules.lookup(reg)
        if lim is None or r is None:
            return None
        f = r.layout_field(fld)
        v = lim.field(f.shift, f.width)
        return None if v is None else _cmp(v, d)

    def _derive(self, d: dict[str, Any]) -> bool | None:
        if "all" in d:
            vals = [self._derive(x) for x in d["all"]]
            return False if False in vals else (None if None in vals else True)
        if "any" in d:
            vals = [self._derive(x) for x in d["any"]]
            return True if True in vals else (None if None in vals else False)
        v = self.host_field(d["host_field"])
        return None if v is None else _cmp(v, d)


def _cmp(v: int, c: Mapping[str, Any]) -> bool:
    if "eq" in c:
        return v == c["eq"]
    if "ge" in c:
        return v >= c["ge"]
    if "lt" in c:
        return v < c["lt"]
    if "in" in c:
        return v in c["in"]
    raise ValueError(f"bad comparison {c!r}")


def _describe_cmp(c: Mapping[str, Any]) -> str:
    for k, op in (("eq", "=="), ("ge", ">="), ("lt", "<"), ("in", "in")):
        if k in c:
            return f"{c['host_field']} {op} {c[k]}"
    return str(c)


_ALWAYS_KNOWN = {"vcpu", "vm"}


def _normalise_features(rules: KernelRules, features: Iterable[str]) -> frozenset[str]:
    out: set[str] = set()
    for f in features:
        key = f.strip().lower()
        if key in rules.feature_aliases:
            mapped = rules.feature_aliases[key]
            if mapped:
                out.add(mapped)
        else:
            raise ValueError(
                f"unknown vCPU feature {f!r} for Linux {rules.kernel}; known: "
                f"{', '.join(sorted(k for k, v in rules.feature_aliases.items() if v))}")
    return frozenset(out)


def _host_partials(host: Mapping[str, int] | None, rules: KernelRules,
                   base: Mapping[str, Partial] | None = None) -> dict[str, Partial]:
    """Host facts by register (``"ID_AA64PFR0_EL1": 0x...``) or by single field
    (``"ID_AA64PFR0_EL1.MPAM": 0``), merged over ``base``. A field this kernel does not
    describe (GCIE before 6.17) cannot matter to its checks and is skipped."""
    out: dict[str, Partial] = dict(base or {})
    for k, v in (host or {}).items():
        reg, _, fld = k.partition(".")
        r = rules.lookup(reg)
        name = r.name if r else reg
        if fld:
            if r is None or not any(lf.name == fld for lf in r.layout):
                continue
            f = r.layout_field(fld)
            out[name] = out.get(name, Partial.unknown()).with_field(f.shift, f.width, int(v))
        else:
            out[name] = Partial(int(v) & MASK64)
    return out


# --------------------------------------------------------------------------- #
# KVM's limit (reset value) for a register
# --------------------------------------------------------------------------- #

def _visibility(ctx: _Ctx, reg: RegisterRules) -> tuple[bool, bool]:
    """(RAZ, user writes ignored) for the register in this VM."""
    vis = reg.visibility
    raz = wi = False
    while vis:
        rule = ctx.rules.visibility_rules[vis]
        if rule.get("raz"):
            return True, wi
        if "raz_user_wi_unless" in rule and not ctx.cond(rule["raz_user_wi_unless"]):
            return True, True
        cond = rule.get("raz_unless", {}).get(reg.name)
        if cond is not None and not ctx.cond(cond):
            raz = True
        vis = rule.get("then")
    return raz, wi


def _derived(ctx: _Ctx, name: str) -> int | None:
    spec = ctx.rules.derived[name]
    v = _derived(ctx, spec["from"]) if "from" in spec else ctx.host_field(spec["host_field"])
    for st in spec["steps"]:
        if "if" in st:
            if ctx.cond(st["if"]):
                return int(st["value"])
            continue
        if v is None:
            return None
        if "map" in st:
            v = int(st["map"].get(str(v), v))
        elif "min" in st:
            v = min(v, int(st["min"]))
    return v


def _limit(ctx: _Ctx, reg: RegisterRules) -> Partial:
    if ctx.limit_override is not None and reg.name in ctx.limit_override:
        return ctx.limit_override[reg.name]
    spec = reg.limit
    if spec.get("raz_zero") and _visibility(ctx, reg)[0]:
        return Partial(0)
    base = spec["base"]
    if base == "host":
        val = ctx.host_reg(reg.name)
    elif base == "clidr_from_ctr":
        val = _clidr_from_ctr(ctx, spec)
    else:
        val = Partial.unknown()
    for st in spec["steps"]:
        val = _limit_step(ctx, reg, st, val)
    return val


def _fields_mask(reg: RegisterRules, names: Iterable[str]) -> int:
    m = 0
    for n in names:
        m |= reg.layout_field(n).mask
    return m


def _guard(ctx: _Ctx, st: Mapping[str, Any]) -> bool:
    if "if" in st and not ctx.cond(st["if"]):
        return False
    return not ("unless" in st and ctx.cond(st["unless"]))


def _limit_step(ctx: _Ctx, reg: RegisterRules, st: Mapping[str, Any], val: Partial) -> Partial:
    op = st["op"]
    if op == "nv_limit":
        if "vcpu.nv" in str(st.get("if")) and "nv" in ctx.features:
            raise _Unmodelled("limit_nv_id_reg() (nested virtualisation) is not modelled")
        return val
    if not _guard(ctx, st):
        return val
    if op == "clear":
        return val.clear(_fields_mask(reg, st["fields"]))
    if op == "keep":
        return val.clear(MASK64 & ~_fields_mask(reg, st["fields"]))
    f = reg.layout_field(st["field"])
    if op == "set":
        return val.with_field(f.shift, f.width, int(st["value"]))
    if op == "set_derived":
        return val.with_field(f.shift, f.width, _derived(ctx, st["derived"]))
    if op == "cap":
        cur = val.field(f.shift, f.width)
        if cur is not None and cur in st.get("except", ()):
            return val  # cpuid_feature_cap_perfmon_field() (< 6.7) leaves IMP_DEF (0xf) as it is
        return val.with_field(f.shift, f.width, None if cur is None else min(cur, int(st["max"])))
    raise ValueError(f"unknown limit op {op!r}")


def _clidr_from_ctr(ctx: _Ctx, spec: Mapping[str, Any]) -> Partial:
    """reset_clidr(): a CLIDR_EL1 fabricated from the host's CTR_EL0.IDC/DIC."""
    ctr = ctx.host_reg("CTR_EL0")
    idc_b = ctr.field(28, 1)
    dic_b = ctr.field(29, 1)
    idc = ctx.decide("host CTR_EL0.IDC == 1", None if idc_b is None else idc_b == 1)
    dic = ctx.decide("host CTR_EL0.DIC == 1", None if dic_b is None else dic_b == 1)

    def ctype_shift(level: int) -> int:
        return 3 * (level - 1)

    unified, inst, data = 4, 1, 2
    if idc:
        loc = 1 if dic else 2
        clidr = unified << ctype_shift(loc)
    else:
        loc = 1
        clidr = (1 << 27) | (1 << 21) | (data << ctype_shift(1))  # LoUU, LoUIS
    if not dic:
        clidr |= inst << ctype_shift(1)
    clidr |= loc << 24
    if ctx.cond(spec.get("mte_if")):
        clidr |= 2 << (2 * (loc - 1) + 33)
    return Partial(clidr)


# --------------------------------------------------------------------------- #
# arm64_check_features() and arm64_ftr_safe_value()
# --------------------------------------------------------------------------- #

def safe_value(policy: str, new: int, cur: int, safe_val: int) -> int:
    """arm64_ftr_safe_value() (arch/arm64/kernel/cpufeature.c:939-963, Linux 7.3.4), exactly: the
    one implementation in cpumodel. ``new``/``cur`` are field values, sign-extended for signed
    fields. FTR_EXACT gives ``safe_val`` whatever the two values are: the kernel's callers
    (update_cpu_ftr_reg(), arm64_check_features()) never ask when they are equal."""
    if policy == "EXACT":
        return safe_val
    if policy == "LOWER_SAFE":
        return min(new, cur)
    if policy == "HIGHER_OR_ZERO_SAFE" and (not cur or not new):
        return 0
    if policy in ("HIGHER_SAFE", "HIGHER_OR_ZERO_SAFE"):
        return max(new, cur)
    raise ValueError(f"unknown ftr policy {policy}")


def field_allowed(policy: str, signed: bool, width: int, asked: int, limit: int, safe_val: int) -> bool:
    """Whether arm64_check_features() accepts ``asked`` against ``limit`` for one field."""
    a = _sext(asked, width) if signed else asked
    lim = _sext(limit, width) if signed else limit
    if a == lim:
        return True
    return safe_value(policy, a, lim, safe_val) == a


@lru_cache(maxsize=65536)
def _allowed_for_any_limit(policy: str, signed: bool, width: int, asked: int, safe_val: int) -> bool | None:
    """The verdict on ``asked`` when KVM's limit for the field is unknown: True or False when every
    possible limit gives the same answer, else None (depends on the host)."""
    if width > 8:
        return None
    outcomes = {field_allowed(policy, signed, width, asked, x, safe_val) for x in range(1 << width)}
    return outcomes.pop() if len(outcomes) == 1 else None


def _check_features(ctx: _Ctx, reg: RegisterRules, val: int,
                    limit: Partial) -> tuple[str | None, list[FieldVerdict], str]:
    """(errno or None, per-field detail, reason) of arm64_check_features()."""
    src = ctx.rules.check_features.get("source", "")
    raz = _visibility(ctx, reg)[0]
    if raz:
        fv = FieldVerdict("(whole register)", 0, 64, val, None, 0, None, val == 0,
                          "RAZ register: only 0 is accepted" if val else "RAZ register, 0 written", src)
        return (None if val == 0 else "EINVAL"), [fv], fv.reason
    if reg.fields is None:
        return "EINVAL", [], f"{reg.name} has no arm64_ftr_reg: arm64_check_features() refuses it"
    out, mask = _checked_fields(ctx, reg, val, limit)
    out += _unchecked_bits(reg, val, limit, MASK64 & ~mask, src)
    if any(f.ok is False for f in out):
        bad = [f.field for f in out if f.ok is False]
        return "EINVAL", out, "refused by arm64_check_features(): " + ", ".join(bad)
    unsure = [f"{reg.name}.{f.field}={f.asked}" for f in out if f.ok is None]
    if unsure and not ctx.decide("KVM's limit allows " + ", ".join(unsure), None):
        return "EINVAL", out, "refused by arm64_check_features() if the host's limit is lower: " + ", ".join(unsure)
    return None, out, "within KVM's limit"


#: _checked_fields' answers: (id of the register's rules, value, limit, host value) -> (those rules, the
#: verdicts, their mask). The KVM model re-runs a write's path once per host fact it forks on, and
#: profiles share register values; the verdicts are immutable values. Bounded, cleared when full.
_CHECKED: dict[tuple[int, int, Partial, Partial], tuple[RegisterRules, list[FieldVerdict], int]] = {}


def _checked_fields(ctx: _Ctx, reg: RegisterRules, val: int, limit: Partial) -> tuple[list[FieldVerdict], int]:
    """The verdict of each field arm64_check_features() checks (its ftr_bits policy against the
    limit), and the mask of those fields (a new list: callers extend it)."""
    assert reg.fields is not None
    host = ctx.host_reg(reg.name)
    key = (id(reg), val, limit, host)
    hit = _CHECKED.get(key)
    if hit is not None and hit[0] is reg:
        return list(hit[1]), hit[2]
    out: list[FieldVerdict] = []
    mask = 0
    for f in reg.fields:
        if not f.checked:
            continue
        mask |= f.mask
        asked = (val >> f.shift) & ((1 << f.width) - 1)
        lim = limit.field(f.shift, f.width)
        hv = host.field(f.shift, f.width)
        if lim is not None:
            ok: bool | None = field_allowed(f.policy, f.signed, f.width, asked, lim, f.safe_val)
        else:
            ok = _allowed_for_any_limit(f.policy, f.signed, f.width, asked, f.safe_val)
        if ok:
            reason = f"{f.name}={asked} allowed by {f.policy}" + ("" if lim is None else f" against limit {lim}")
        elif ok is False:
            reason = f"{f.name}={asked} refused: {f.policy}{' (signed)' if f.signed else ''} against KVM's limit {lim}"
        else:
            reason = f"{f.name}={asked}: depends on KVM's limit for the field, which depends on the host"
        out.append(FieldVerdict(f.name, f.shift, f.width, asked, hv, lim, f.policy, ok, reason, f.source))
    if len(_CHECKED) >= 2048:
        _CHECKED.clear()
    _CHECKED[key] = (reg, list(out), mask)
    return out, mask


_UNCHECKED: dict[tuple[int, int, Partial, int, str], tuple[RegisterRules, list[FieldVerdict]]] = {}  # as _CHECKED


def _unchecked_bits(reg: RegisterRules, val: int, limit: Partial, rest: int, src: str) -> list[FieldVerdict]:
    """The bits ``rest`` no checked field covers: they must equal the limit (by layout field, then
    any unnamed bits). Memoised as ``_checked_fields`` is (a new list each time)."""
    key = (id(reg), val, limit, rest, src)
    hit = _UNCHECKED.get(key)
    if hit is not None and hit[0] is reg:
        return list(hit[1])
    out = _unchecked_bits_of(reg, val, limit, rest, src)
    if len(_UNCHECKED) >= 2048:
        _UNCHECKED.clear()
    _UNCHECKED[key] = (reg, list(out))
    return out


def _unchecked_bits_of(reg: RegisterRules, val: int, limit: Partial, rest: int, src: str) -> list[FieldVerdict]:
    out: list[FieldVerdict] = []
    diff_known = (val ^ limit.value) & rest & limit.known
    unknown = rest & ~limit.known
    seen = 0
    for lf in reg.layout:
        if lf.mask & rest == 0:
            continue
        seen |= lf.mask
        fm = lf.mask & rest
        asked = (val & lf.mask) >> lf.shift
        lim = limit.field(lf.shift, lf.width)
        if diff_known & fm:
            out.append(FieldVerdict(lf.name, lf.shift, lf.width, asked, None, lim, None, False,
                                    f"{lf.name}={asked} refused: not writable (or not described by ftr_bits), "
                                    f"must equal KVM's value {lim}", src))
        elif unknown & fm:
            out.append(FieldVerdict(lf.name, lf.shift, lf.width, asked, None, None, None, None,
                                    f"{lf.name}={asked}: not writable, must equal KVM's value, which depends on "
                                    "the host", src))
    other = rest & ~seen
    if diff_known & other:
        b = diff_known & other
        out.append(FieldVerdict(reg.field_name_for_bits(b), (b & -b).bit_length() - 1, 1, val & b, None,
                                limit.value & b, None, False, f"bits {b:#x} differ from KVM's value", src))
    elif unknown & other and (val & unknown & other):
        out.append(FieldVerdict("(unnamed bits)", 0, 64, val & unknown & other, None, None, None, None,
                                "unnamed bits must equal KVM's value, which depends on the host", src))
    return out


# --------------------------------------------------------------------------- #
# The set path
# --------------------------------------------------------------------------- #

@record
class _Out:
    errno: str | None
    reason: str
    source: str
    fields: list[FieldVerdict] = field(default_factory=list)
    stored: int | None = None
    assumptions: list[str] = field(default_factory=list)


def _field_of(reg: RegisterRules, name: str, val: int) -> int:
    f = reg.layout_field(name)
    return (val >> f.shift) & ((1 << f.width) - 1)


def _set_field(reg: RegisterRules, name: str, val: int, v: int) -> int:
    f = reg.layout_field(name)
    return (val & ~f.mask) | ((v << f.shift) & f.mask)


def _current(ctx: _Ctx, reg: RegisterRules, current: int | None, notes: list[str]) -> Partial:
    """The value stored in the VM when the write arrives after the first run."""
    if current is not None:
        return Partial(current & MASK64)
    val = _limit(ctx, reg)
    for st in ctx.rules.first_run:
        if st["op"] == "assume":
            if _guard(ctx, st):
                notes.append(st["assumption"] + f" [{st['source']}]")
            continue
        if st.get("reg") != reg.name or not _guard(ctx, st):
            continue
        if st["op"] == "clear":
            val = val.clear(_fields_mask(reg, st["fields"]))
    return val


def _set_path(ctx: _Ctx, reg: RegisterRules, value: int, after_run: bool, current: int | None) -> _Out:
    """The register's set_user handler, step by step: steps that adjust the value (or refuse it,
    ``_VALUE_STEPS``) run in order until the step that gives the verdict (``_final_step``)."""
    notes: list[str] = []
    if reg.visibility:
        _raz, wi = _visibility(ctx, reg)
        if wi:
            vr = ctx.rules.visibility_rules[reg.visibility]
            return _Out(None, "REG_RAZ|REG_USER_WI: the write is accepted and ignored", vr.get("source", ""))
    handler = reg.set_handler
    val = value
    for st in handler["steps"]:
        op = st["op"]
        src = st.get("source", handler.get("source", ""))
        step = _VALUE_STEPS.get(op)
        if step is None:
            return _final_step(ctx, reg, st, val, src, after_run, current, notes)
        val, refused = step(ctx, reg, st, val, src, notes)
        if refused is not None:
            return refused
    raise ValueError(f"{reg.name}: handler ends without a verdict")


def _final_step(ctx: _Ctx, reg: RegisterRules, st: Mapping[str, Any], val: int, src: str, after_run: bool,
                current: int | None, notes: list[str]) -> _Out:
    """The verdict of a handler's last step on the (adjusted) value."""
    op = st["op"]
    if op == "set_id_reg":
        return _set_id_reg(ctx, reg, val, after_run, current, notes)
    if op == "imp_id_reg":
        return _imp_id_reg(ctx, reg, val, after_run, current, src, notes)
    if op == "invariant":
        hv = ctx.host_reg(reg.name).exact
        same = ctx.decide(f"host {reg.name} == {val:#x}", None if hv is None else hv == val)
        if same:
            return _Out(None, "equal to the host's (invariant) value", src, stored=val)
        return _Out("EINVAL", f"{reg.name} is invariant: only the host's value is accepted", src)
    if op == "equal_limit":
        return _equal_limit(ctx, reg, val, st, src, notes)
    if op == "clidr":
        return _clidr(ctx, reg, val, src)
    if op == "store":
        return _Out(None, "no set_user handler: the value is stored as given", src, stored=val)
    raise ValueError(f"unknown set op {op!r}")


_Step = tuple[int, "_Out | None"]


def _step_nv(ctx: _Ctx, reg: RegisterRules, st: Mapping[str, Any], val: int, src: str, notes: list[str]) -> _Step:
    """nv_doublelock_fixup, nv_tgran2_check: only with nested virtualisation, which is not modelled."""
    if _guard(ctx, {"if": st.get("if")}) and "nv" in ctx.features:
        raise _Unmodelled(f"{st['op']}: nested virtualisation is not modelled")
    return val, None


def _step_rewrite(ctx: _Ctx, reg: RegisterRules, st: Mapping[str, Any], val: int, src: str,
                  notes: list[str]) -> _Step:
    """A field value the kernel rewrites before its checks."""
    if _guard(ctx, st) and _field_of(reg, st["field"], val) == st["eq"]:
        val = _set_field(reg, st["field"], val, st["to"])
        notes.append(f"{st['field']}={st['eq']} is rewritten to {st['to']} before the checks [{src}]")
    return val, None


def _step_reject(ctx: _Ctx, reg: RegisterRules, st: Mapping[str, Any], val: int, src: str,
                 notes: list[str]) -> _Step:
    """A field value the handler refuses outright."""
    if not _guard(ctx, st):
        return val, None
    fv = _field_of(reg, st["field"], val)
    if _cmp(fv, st):
        f = reg.layout_field(st["field"])
        d = FieldVerdict(st["field"], f.shift, f.width, fv, None, None, None, False, st.get("why", ""), src)
        return val, _Out(st["errno"], f"{st['field']}={fv}: {st.get('why', 'refused')}", src, [d],
                         assumptions=notes)
    return val, None


def _step_ignore_if_host_equal(ctx: _Ctx, reg: RegisterRules, st: Mapping[str, Any], val: int, src: str,
                               notes: list[str]) -> _Step:
    """A field accepted and dropped (stored as 0) when it equals the host's."""
    f = reg.layout_field(st["field"])
    hv = ctx.host_reg(reg.name).field(f.shift, f.width)
    uv = _field_of(reg, st["field"], val)
    same = ctx.decide(f"host {reg.name}.{st['field']} == {uv}", None if hv is None else hv == uv)
    if same:
        if uv:
            notes.append(f"{st['field']}={uv} equals the host's value: accepted and dropped [{src}]")
        val = _set_field(reg, st["field"], val, 0)
    return val, None


def _step_replace_from_host(ctx: _Ctx, reg: RegisterRules, st: Mapping[str, Any], val: int, src: str,
                            notes: list[str]) -> _Step:
    """A field value replaced by the host's when the host's fields match ``host_eq``."""
    if _field_of(reg, st["field"], val) != st["user_eq"]:
        return val, None
    for hf, hv_want in st["host_eq"].items():
        f = reg.layout_field(hf)
        hv = ctx.host_reg(reg.name).field(f.shift, f.width)
        if not ctx.decide(f"host {reg.name}.{hf} == {hv_want}", None if hv is None else hv == hv_want):
            return val, None
    notes.append(f"{st['field']}={st['user_eq']} replaced by the host's value [{src}]")
    return _set_field(reg, st["field"], val, st["host_eq"][st["field"]]), None


#: The handler steps that adjust (or refuse) the value before the verdict, by op name.
_VALUE_STEPS: dict[str, Callable[[_Ctx, RegisterRules, Mapping[str, Any], int, str, list[str]], _Step]] = {
    "nv_doublelock_fixup": _step_nv,
    "nv_tgran2_check": _step_nv,
    "rewrite": _step_rewrite,
    "reject": _step_reject,
    "ignore_if_host_equal": _step_ignore_if_host_equal,
    "replace_from_host": _step_replace_from_host,
}


def _set_id_reg(ctx: _Ctx, reg: RegisterRules, val: int, after_run: bool, current: int | None,
                notes: list[str]) -> _Out:
    src = reg.set_handler.get("source") or ctx.rules.check_features.get("source", "")
    set_src = ctx.rules.raw.get("order", {}).get("source", src)
    if after_run:
        cur = _current(ctx, reg, current, notes)
        diff = (val ^ cur.value) & cur.known
        if diff:
            return _Out("EBUSY", f"the VM has run: only the stored value {cur.value:#018x} is accepted", set_src,
                        assumptions=notes)
        if cur.known != MASK64:
            ctx.decide(f"stored {reg.name} == {val:#x}", None)
        return _Out(None, "the VM has run and the value equals the stored one", set_src, stored=val,
                    assumptions=notes)
    limit = _limit(ctx, reg)
    errno, fields, reason = _check_features(ctx, reg, val, limit)
    return _Out(errno, reason, ctx.rules.check_features.get("source", src), fields,
                stored=None if errno else val, assumptions=notes)


def _equal_limit(ctx: _Ctx, reg: RegisterRules, val: int, st: Mapping[str, Any], src: str,
                 notes: list[str]) -> _Out:
    """set_id_reg() before Linux 6.7: ID registers are not writable; only KVM's own value
    (read_id_reg(), the limit) is accepted, but for the ``except`` fields; before and after the
    first run alike."""
    limit = _limit(ctx, reg)
    care = MASK64 & ~_fields_mask(reg, st.get("except", ()))
    diff = (val ^ limit.value) & limit.known & care
    if not diff and care & ~limit.known:
        shown = f"{val & care:#x}" + (f" outside {', '.join(st['except'])}" if st.get("except") else "")
        if not ctx.decide(f"KVM's {reg.name} == {shown}", None):
            return _Out("EINVAL", "differs from KVM's own value (ID registers are not writable on this kernel)",
                        src, assumptions=notes)
    if not diff:
        return _Out(None, "equal to KVM's own value", src, stored=val, assumptions=notes)
    out: list[FieldVerdict] = []
    seen = 0
    for lf in reg.layout:
        if lf.mask & diff:
            seen |= lf.mask
            asked = (val & lf.mask) >> lf.shift
            lim = limit.field(lf.shift, lf.width)
            out.append(FieldVerdict(lf.name, lf.shift, lf.width, asked, None, lim, None, False,
                                    f"{lf.name}={asked} refused: ID registers are not writable on this kernel, "
                                    f"must equal KVM's value {lim}", src))
    if diff & ~seen:
        b = diff & ~seen
        out.append(FieldVerdict(reg.field_name_for_bits(b), (b & -b).bit_length() - 1, 1, val & b, None,
                                limit.value & b, None, False, f"bits {b:#x} differ from KVM's value", src))
    return _Out("EINVAL", "refused: ID registers are not writable on this kernel (only KVM's own value): "
                + ", ".join(f.field for f in out), src, out, assumptions=notes)


def _imp_id_reg(ctx: _Ctx, reg: RegisterRules, val: int, after_run: bool, current: int | None, src: str,
                notes: list[str]) -> _Out:
    expected = Partial(current & MASK64) if current is not None else _limit(ctx, reg)
    known = expected.exact
    same = known == val if known is not None else ctx.decide(f"stored {reg.name} == {val:#x}", None)
    if same:
        return _Out(None, "equal to the current value", src, stored=val)
    if "writable_imp_id_regs" not in ctx.features:
        return _Out("EINVAL", "implementation ID registers are invariant unless KVM_CAP_ARM_WRITABLE_IMP_ID_REGS "
                    "is enabled", src)
    if after_run:
        return _Out("EBUSY", "the VM has run", src)
    if val & ~reg.writable_mask:
        return _Out("EINVAL", f"bits outside the writable mask {reg.writable_mask:#x}", src)
    return _Out(None, "any value within the writable mask", src, stored=val)


def _clidr(ctx: _Ctx, reg: RegisterRules, val: int, src: str) -> _Out:
    res0 = MASK64 & ~reg.writable_mask
    if val & res0:
        return _Out("EINVAL", f"RES0 bits {val & res0:#x} set", src)
    loc = _field_of(reg, "LoC", val)
    louis = _field_of(reg, "LoUIS", val)
    louu = _field_of(reg, "LoUU", val)
    needs_idc = (not loc) or (not louis and not louu)
    if needs_idc:
        idc_b = ctx.host_reg("CTR_EL0").field(28, 1)
        idc = ctx.decide("host CTR_EL0.IDC == 1", None if idc_b is None else idc_b == 1)
        if not idc:
            return _Out("EINVAL", "no cache level for PoU/PoC but the host's CTR_EL0.IDC is 0", src)
    return _Out(None, "a CLIDR_EL1 the host's CTR_EL0 allows", src, stored=val)


# --------------------------------------------------------------------------- #
# Forking over unknown host facts
# --------------------------------------------------------------------------- #

@record(frozen=True)
class _Leaf:
    out: _Out | None
    unmodelled: str | None = None


def _explore(fn: Callable[[_Ctx], _Out], ctx: _Ctx, depth: int = 0) -> list[tuple[dict[str, bool], _Leaf]]:
    try:
        return [(dict(ctx.assume), _Leaf(fn(ctx)))]
    except _Unmodelled as exc:
        return [(dict(ctx.assume), _Leaf(None, str(exc)))]
    except _Fork as fork:
        if depth > 12:
            return [(dict(ctx.assume), _Leaf(None, f"too many unknown host facts (at {fork.key})"))]
        leaves = []
        for choice in (True, False):
            sub = replace(ctx, assume={**ctx.assume, fork.key: choice})
            leaves += _explore(fn, sub, depth + 1)
        return leaves


def _verdict(reg_name: str, value: int, leaves: list[tuple[dict[str, bool], _Leaf]]) -> Verdict:
    unm = [leaf.unmodelled for _, leaf in leaves if leaf.unmodelled]
    if unm:
        return Verdict(reg_name, value, UNMODELLED, None, unm[0], "")
    outs = [(a, leaf.out) for a, leaf in leaves if leaf.out is not None]
    errnos = {o.errno for _, o in outs}
    if len(errnos) == 1:
        o = outs[0][1]
        deps = sorted({k for a, _ in outs for k in a}) if len(outs) > 1 else []
        return Verdict(reg_name, value, ACCEPTED if o.errno is None else REJECTED, o.errno, o.reason, o.source,
                       tuple(o.fields), o.stored, tuple(deps), (),
                       tuple(dict.fromkeys(n for _, oo in outs for n in oo.assumptions)))
    deps = sorted({k for a, _ in outs for k in a})
    outcomes = tuple((", ".join(f"{k}={'yes' if v else 'no'}" for k, v in a.items()), o.errno) for a, o in outs)
    reason = "depends on the host: " + "; ".join(f"if {a}: {e or 'accepted'}" for a, e in outcomes)
    fields = tuple(f for _, o in outs for f in o.fields if f.ok is not True)
    return Verdict(reg_name, value, DEPENDS, None, reason, outs[0][1].source, fields, None, tuple(deps), outcomes)


def _run(rules: KernelRules, reg: str | Encoding, value: int, ctx: _Ctx, after_run: bool,
         current: int | None) -> Verdict:
    value &= MASK64
    r = rules.lookup(reg)
    label = reg if isinstance(reg, str) else "S{}_{}_C{}_C{}_{}".format(*reg)
    if r is None:
        if isinstance(reg, str) and reg in rules.other_registers:
            return Verdict(label, value, UNMODELLED, None, f"{reg} is not an ID register: not modelled", "")
        src = rules.raw.get("errnos", {}).get("ENOENT", {}).get("source", "")
        return Verdict(label, value, REJECTED, "ENOENT", f"Linux {rules.kernel_full} has no register {label}", src)
    leaves = _explore(lambda c: _set_path(c, r, value, after_run, current), ctx)
    return _verdict(r.name, value, leaves)


# --------------------------------------------------------------------------- #
# Public entry points
# --------------------------------------------------------------------------- #

def check_write(
    rules: KernelRules,
    reg: str | Encoding,
    value: int,
    host: Mapping[str, int] | None,
    vcpu_features: Iterable[str] = frozenset(),
    after_run: bool = False,
    current: int | None = None,
    *,
    host_caps: Mapping[str, bool] | None = None,
) -> Verdict:
    """KVM's verdict on writing ``value`` to ``reg`` with ``KVM_SET_ONE_REG``.

    ``host``: the host's sanitised ID register values (``read_sanitised_ftr_reg``),
    by register name; None when unknown, and then every check relative to the
    host answers ``depends_on_host``.  ``vcpu_features``: vCPU features and VM
    capabilities of the VM (``pmu``, ``sve``, ``ptrauth``, ``el1_32bit``, ``nv``,
    ``mte``, ``vgic``, ``writable_imp_id_regs``).  ``after_run``: a vCPU of the VM
    has run; ``current`` is then the value KVM holds (default: KVM's default after
    the first-run fix-ups).  ``host_caps`` sets host facts the ID registers do not
    show (``spectre_v2_unaffected``, ``meltdown_unaffected``, ``gicv3``,
    ``broken_cntvoff``, ``pmuv3_impdef_traps``, ...).
    """
    ctx = _Ctx(rules, _normalise_features(rules, vcpu_features), _host_partials(host, rules), dict(host_caps or {}))
    return _run(rules, reg, value, ctx, after_run, current)


def host_view_from_defaults(rules: KernelRules, defaults: Mapping[str, int | str | None],
                            vcpu_features: Iterable[str] = frozenset()) -> dict[str, Partial]:
    """What KVM's defaults reveal of the host: every field KVM does not rewrite
    on the way from the host's value to its limit keeps the host value; the
    fields it rewrites (and registers it hides) stay unknown."""
    feats = _normalise_features(rules, vcpu_features)
    out: dict[str, Partial] = {}
    for k, v in defaults.items():
        r = rules.lookup(k)
        if r is None or v is None:
            continue
        iv = int(v, 16) if isinstance(v, str) else int(v)
        if r.limit.get("base") != "host":
            continue
        touched = _rewritten_mask(r)
        if r.limit.get("raz_zero") and r.visibility:
            ctx = _Ctx(rules, feats, {}, {})
            try:
                if _visibility(ctx, r)[0]:
                    continue
            except _Fork:
                continue
        out[r.name] = Partial(iv & ~touched, MASK64 & ~touched)
    return out


def rewritten_fields(rules: KernelRules, reg: str | Encoding) -> tuple[str, ...]:
    """The fields (kernel layout names) of ``reg`` that KVM may rewrite on the way from the host's
    value to its defaults, so KVM's defaults do not show the host's value of them (the fields
    :func:`host_view_from_defaults` leaves unknown)."""
    r = rules.lookup(reg)
    if r is None or r.limit.get("base") != "host":
        return ()
    touched = _rewritten_mask(r)
    return tuple(lf.name for lf in r.layout if lf.mask & touched)


def _rewritten_mask(r: RegisterRules) -> int:
    """The bits the steps of KVM's limit may rewrite on the way from the host's value to its defaults
    (every field a step names; for ``keep``, every field it does not name)."""
    touched = 0
    for st in r.limit["steps"]:
        if "fields" in st:
            touched |= _fields_mask(r, st["fields"])
        elif "field" in st:
            touched |= r.layout_field(st["field"]).mask
        if st["op"] == "keep":
            touched |= MASK64 & ~_fields_mask(r, st["fields"])
    return touched


@record(frozen=True)
class DefaultsView:
    """KVM's defaults for one VM configuration, prepared once for many checks
    (see :func:`check_write_against_defaults`)."""

    rules: KernelRules
    _ctx: _Ctx

    def check(self, reg: str | Encoding, value: int, after_run: bool = False,
              current: int | None = None) -> Verdict:
        return _run(self.rules, reg, value, self._ctx, after_run, current)


def prepare_defaults(
    rules: KernelRules,
    defaults: Mapping[str, int | str | None],
    vcpu_features: Iterable[str] = frozenset(),
    *,
    host: Mapping[str, int] | None = None,
    host_caps: Mapping[str, bool] | None = None,
) -> DefaultsView:
    """Prepare :func:`check_write_against_defaults` for many writes to one VM."""
    feats = _normalise_features(rules, vcpu_features)
    limits: dict[str, Partial] = {}
    for k, v in defaults.items():
        r = rules.lookup(k)
        if r is not None and v is not None:
            limits[r.name] = Partial((int(v, 16) if isinstance(v, str) else int(v)) & MASK64)
    hv = _host_partials(host, rules, host_view_from_defaults(rules, defaults, vcpu_features))
    return DefaultsView(rules, _Ctx(rules, feats, hv, dict(host_caps or {}), limit_override=limits))


def prepare_host(
    rules: KernelRules,
    vcpu_features: Iterable[str] = frozenset(),
    *,
    host: Mapping[str, int] | None = None,
    unknown: Mapping[str, int] | None = None,
    defaults: Mapping[str, int | str | None] | None = None,
    limits: bool = True,
    host_caps: Mapping[str, bool] | None = None,
) -> DefaultsView:
    """One VM on one host, prepared once for many :meth:`DefaultsView.check` calls.

    ``host``: the host's sanitised register values and/or single fields (``"REG.FIELD"``);
    ``unknown``: register -> bits of ``host`` that are not known (fields a capture could not
    see), never guessed. ``defaults``: KVM's own view of a VM on the host (KVM_GET_ONE_REG
    after KVM_ARM_VCPU_INIT); with ``limits`` (it was taken with these ``vcpu_features``) it is
    KVM's limit as in :func:`prepare_defaults`, else only what it reveals of the host is used.
    """
    feats = _normalise_features(rules, vcpu_features)
    base = host_view_from_defaults(rules, defaults) if defaults is not None else None
    hv = _unknown(_host_partials(host, rules, base), rules, unknown)
    override = None
    if defaults is not None and limits:
        override = {}
        for k, v in defaults.items():
            r = rules.lookup(k)
            if r is not None and v is not None:
                override[r.name] = Partial((int(v, 16) if isinstance(v, str) else int(v)) & MASK64)
    return DefaultsView(rules, _Ctx(rules, feats, hv, dict(host_caps or {}), limit_override=override))


def host_caps_from_vulnerabilities(vulnerabilities: Mapping[str, str]) -> dict[str, bool]:
    """The host facts KVM's verdicts need, from what /sys/devices/system/cpu/vulnerabilities/
    reports; a text that does not decide a fact leaves it out (unknown).

    ``spectre_v2``: cpu_show_spectre_v2() (arch/arm64/kernel/proton-pack.c:120-147, Linux 7.3.4)
    prints "Not affected" or "Mitigation: CSV2..." only for SPECTRE_UNAFFECTED, "Mitigation:
    Branch predictor hardening..." for SPECTRE_MITIGATED, "Vulnerable" for SPECTRE_VULNERABLE;
    "Vulnerable: Unprivileged eBPF enabled" may be either of the first two. ``meltdown``:
    cpu_show_meltdown() (arch/arm64/kernel/cpufeature.c:4237-4248) prints "Not affected" exactly
    when arm64_get_meltdown_state() is SPECTRE_UNAFFECTED, else "Mitigation: PTI"/"Vulnerable".
    """
    out: dict[str, bool] = {}
    v2 = vulnerabilities.get("spectre_v2")
    if v2 is not None:
        t = v2.strip()
        if t == "Not affected" or t.startswith("Mitigation: CSV2"):
            out["spectre_v2_unaffected"] = True
        elif t.startswith("Mitigation: Branch predictor hardening") or t == "Vulnerable":
            out["spectre_v2_unaffected"] = False
    md = vulnerabilities.get("meltdown")
    if md is not None:
        t = md.strip()
        if t == "Not affected":
            out["meltdown_unaffected"] = True
        elif t in ("Mitigation: PTI", "Vulnerable"):
            out["meltdown_unaffected"] = False
    return out


def check_write_against_defaults(
    rules: KernelRules,
    reg: str | Encoding,
    value: int,
    defaults: Mapping[str, int | str | None],
    vcpu_features: Iterable[str] = frozenset(),
    after_run: bool = False,
    current: int | None = None,
    *,
    host: Mapping[str, int] | None = None,
    host_caps: Mapping[str, bool] | None = None,
) -> Verdict:
    """Like :func:`check_write`, but KVM's limit is taken from ``defaults``: the
    values KVM itself reported (KVM_GET_ONE_REG right after KVM_ARM_VCPU_INIT)
    for a VM with the same ``vcpu_features`` - KVM's view, not the raw host.

    The few checks that compare with the raw host value (MPAM, MPAM_frac, NV,
    MTE_frac, CLIDR_EL1 vs CTR_EL0.IDC, invariant MIDR...) use ``host`` where
    given (register values, or single fields as ``"REG.FIELD": value``), else what
    the defaults reveal (:func:`host_view_from_defaults`); a fact hidden by KVM
    stays unknown.  ``current`` (after a run) defaults to the default with the
    first-run fix-ups.  For many writes, :func:`prepare_defaults` once and call
    :meth:`DefaultsView.check`.
    """
    view = prepare_defaults(rules, defaults, vcpu_features, host=host, host_caps=host_caps)
    return view.check(reg, value, after_run, current)


def _unknown(hv: dict[str, Partial], rules: KernelRules, unknown: Mapping[str, int] | None) -> dict[str, Partial]:
    for name, m in (unknown or {}).items():
        r = rules.lookup(name)
        if r is not None and r.name in hv:
            p = hv[r.name]
            hv[r.name] = Partial(p.value & ~m, p.known & ~m)
    return hv


def kvm_limit(rules: KernelRules, reg: str | Encoding, host: Mapping[str, int] | None,
              vcpu_features: Iterable[str] = frozenset(), *,
              host_caps: Mapping[str, bool] | None = None, unknown: Mapping[str, int] | None = None) -> Partial:
    """KVM's limit for ``reg`` (what its ``reset()`` returns) as a :class:`Partial`:
    bits that depend on unknown host facts (or on bits of ``host`` marked ``unknown``)
    are marked unknown."""
    r = rules.lookup(reg)
    if r is None:
        raise KeyError(f"Linux {rules.kernel_full} has no register {reg}")
    hv = _unknown(_host_partials(host, rules), rules, unknown)
    ctx = _Ctx(rules, _normalise_features(rules, vcpu_features), hv, dict(host_caps or {}))
    results: list[Partial] = []

    def go(c: _Ctx) -> _Out:
        results.append(_limit(c, r))
        return _Out(None, "", "")

    leaves = _explore(go, ctx)
    if any(leaf.unmodelled for _, leaf in leaves):
        raise HostDependent(next(leaf.unmodelled for _, leaf in leaves if leaf.unmodelled) or "unmodelled")
    first = results[0]
    known = first.known
    for p in results[1:]:
        known &= p.known & ~(p.value ^ first.value)
    return Partial(first.value & known, known)


def kvm_default(rules: KernelRules, reg: str | Encoding, host: Mapping[str, int] | None,
                vcpu_features: Iterable[str] = frozenset(), *,
                host_caps: Mapping[str, bool] | None = None, unknown: Mapping[str, int] | None = None) -> int:
    """The value KVM gives ``reg`` when the VM's vCPUs are initialised with
    ``vcpu_features``: its reset() value, i.e. KVM's limit.  Raises
    :class:`HostDependent` when that needs host facts that were not given."""
    p = kvm_limit(rules, reg, host, vcpu_features, host_caps=host_caps, unknown=unknown)
    if p.known != MASK64:
        r = rules.lookup(reg)
        assert r is not None
        unknown = MASK64 & ~p.known
        names = sorted({lf.name for lf in r.layout if lf.mask & unknown}) or [f"bits {unknown:#x}"]
        raise HostDependent(f"{r.name}: the default of {', '.join(names)} depends on host facts not given")
    return p.value


def writable_masks(rules: KernelRules, host_aarch32_el0: bool = True) -> dict[str, int]:
    """What KVM_ARM_GET_REG_WRITABLE_MASKS reports, by register (0 where it
    reports nothing): ``sys_reg_desc.val`` of feature-ID registers that have a
    ``set_user``, except AArch32 ones on hosts without AArch32 EL0."""
    out = {}
    for r in rules.registers.values():
        m = r.writable_mask if r.reported_in_writable_masks else 0
        if r.aa32 and not host_aarch32_el0:
            m = 0
        out[r.name] = m
    return out


def init_check(rules: KernelRules, vcpu_features: Iterable[str]) -> str | None:
    """The host-independent part of kvm_vcpu_init_check_features(): an errno
    for feature combinations KVM refuses whatever the host, else None."""
    feats = _normalise_features(rules, vcpu_features)
    if "el1_32bit" in feats and ("mte" in feats or "nv" in feats):
        return "EINVAL"
    return None


__all__ = [
    "ACCEPTED",
    "DEPENDS",
    "REJECTED",
    "UNMODELLED",
    "DefaultsView",
    "FieldVerdict",
    "HostDependent",
    "Partial",
    "Verdict",
    "check_write",
    "check_write_against_defaults",
    "field_allowed",
    "host_caps_from_vulnerabilities",
    "host_view_from_defaults",
    "init_check",
    "kvm_default",
    "kvm_limit",
    "prepare_defaults",
    "prepare_host",
    "rewritten_fields",
    "safe_value",
    "writable_masks",
]
