"""Check step: a resolved ``Model`` -> findings from every rule set."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import field
from functools import lru_cache

from cpumodel.errors import CpumodelError
from cpumodel.findings import Finding
from cpumodel.records import record
from cpumodel.resolve import Model, Resolver
from cpumodel.rules import Context, Rule, hand_rules, matches, run

SEVERITY_ORDER = {"error": 0, "warning": 1, "info": 2}


@record
class Options:
    """How models are checked (the CLI's check options)."""

    ignore: list[str] = field(default_factory=list)
    kernel: str | None = None  # None: the newest modelled kernel
    host: Model | None = None
    vcpu_features: frozenset[str] | None = None  # CLI override of the profile's own
    kvm_caps: frozenset[str] | None = None  # CLI override of the profile's own
    kvm: bool = True  # run KVM and vCPU-feature rules (on guest models; host models get arch rules only)
    role: str | None = None  # override every model's role


def check_model(model: Model, opts: Options | None = None) -> list[Finding]:
    opts = opts or Options()
    vcpu = opts.vcpu_features if opts.vcpu_features is not None else model.vcpu_features
    kvm = opts.kvm and (opts.role or model.role) == "guest"
    ctx = Context(kernel=opts.kernel, host=opts.host, vcpu_features=vcpu, kvm_caps=opts.kvm_caps, kvm=kvm)
    patterns = [p for p, _ in model.ignore] + list(opts.ignore)
    # An ignored rule is not run (each rule function reports only its own ID): its findings would be
    # dropped anyway. The feature engine (every ARCH-*/EXTRA-* rule at once, most of a check's time)
    # runs unless every one of its rules is ignored (``--ignore 'ARCH-*' --ignore 'EXTRA-*'``).
    findings = list(run(_selected(kvm, tuple(patterns), len(hand_rules())), model, ctx))
    from cpumodel.rules import feature_rules

    if not feature_rules.all_ignored(tuple(patterns)):
        findings += feature_rules.check(model, ctx)
    out = [f for f in findings if not matches(f.rule, patterns)]
    if model.facts:
        inherited(model, out)
    for f in out:
        f.profile = model.name
    out.sort(key=lambda f: (f.location.line if f.location and f.location.file == model.path else 0,
                            SEVERITY_ORDER.get(f.severity, 3), f.rule))
    return out


@lru_cache(maxsize=64)
def _selected(kvm: bool, patterns: tuple[str, ...], count: int) -> tuple[Rule, ...]:
    """The hand rules a check runs: all (architecture and profile rules only without ``kvm``) but the
    ignored ones. Memoised (``count``, the number of rules registered, keys it too): profiles checked
    together mostly share their ignore list."""
    return tuple(r for r in hand_rules().values()
                 if (kvm or r.kind in ("arch", "profile")) and not matches(r.id, patterns))


def inherited(model: Model, findings: list[Finding]) -> None:
    """Architecture errors whose values all come unchanged from a profile of facts become warnings
    naming it: a real CPU (``role: host``: the silicon deviates from an Arm mandate) or KVM's own
    defaults (``origin: kvm-defaults``). A profile that sets any field involved keeps the error.
    KVM and vCPU findings keep their severity: the kernel refuses such a write whoever chose it."""
    import os

    kinds = hand_rules()
    real: dict[str, str] = {}  # file -> its real path, for this model's findings
    for f in findings:
        arch = f.rule.startswith("ARCH-") or getattr(kinds.get(f.rule), "kind", "") == "arch"
        if f.severity != "error" or not arch:
            continue
        fields = [tuple(x.split(".", 1)) for x in f.extra.get("fields", [])] or \
            ([(f.register, f.field or "")] if f.register else [])
        files = set()
        for reg, fld in fields:
            loc = model.where(reg, fld)
            if loc and loc.file:
                if loc.file not in real:
                    real[loc.file] = os.path.realpath(loc.file)
                files.add(real[loc.file])
            else:
                files.add("")
        if files and all(p in model.facts for p in files):
            origin = sorted(files)[0]
            f.severity = "warning"
            f.extra["inherited_from"] = os.path.basename(origin)
            f.message += f" (inherited from {os.path.basename(origin)}: {model.facts[origin]})"


@record
class RunResult:
    """What a check of many files found (counts; findings unless streamed)."""

    findings: list[Finding] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # profiles that could not be read, "file:line: msg"
    checked: int = 0  # models resolved and checked (they are not kept: memory stays flat)
    severities: dict[str, int] = field(default_factory=dict)

    @property
    def failed(self) -> bool:
        return self.severities.get("error", 0) > 0


def check_paths(paths: list[str], opts: Options | None = None, search: list[str] | None = None,
                sink: Callable[[list[Finding]], None] | None = None,
                on_error: Callable[[CpumodelError], None] | None = None, allow_outside: bool = False,
                jobs: int | None = 1) -> RunResult:
    """Load, resolve and check many profiles; unreadable ones become ``errors``, the rest go on.

    With ``sink`` (and ``on_error``) each profile's findings go there as they are made and are not
    kept, so checking any number of files takes flat memory; ``severities`` counts them either way.
    ``jobs``: worker processes for many files (None or 0: the idle usable cores; see cpumodel.parallel);
    the results come in the order of ``paths`` either way.
    """
    result = RunResult()
    workers = 0
    if jobs != 1 and len(paths) > 1:
        from cpumodel.parallel import workers_for

        workers = workers_for(jobs, len(paths))
    if workers:
        from cpumodel.parallel import outcomes

        results = outcomes(paths, workers, opts, search, allow_outside)
    else:
        resolver = Resolver(search, allow_outside)
        results = (check_one(resolver, path, opts) for path in paths)
    for found, error in results:
        if error is not None:
            if on_error is not None:
                on_error(error)
            else:
                result.errors.append(str(error))
            continue
        assert found is not None
        result.checked += 1
        for f in found:
            result.severities[f.severity] = result.severities.get(f.severity, 0) + 1
        if sink is not None:
            sink(found)
        else:
            result.findings += found
    return result


def check_one(resolver: Resolver, path: str, opts: Options | None) -> tuple[list[Finding] | None,
                                                                           CpumodelError | None]:
    """One profile's findings, or (None, its error) when it cannot be read."""
    try:
        model = resolver.resolve_file(path)
    except CpumodelError as e:
        if e.location is None:
            from cpumodel.errors import Location

            e.location = Location(path)
        return None, e
    return check_model(model, opts), None


#: File names ``expand_paths`` takes from a directory.
PROFILE_SUFFIXES = (".yaml", ".yml")


def expand_paths(paths: list[str]) -> list[str]:
    """The profiles named by ``paths``: files as given; directories searched recursively for
    ``*.yaml`` and ``*.yml`` (sorted; hidden files and directories, like ``.git``, skipped), as
    ``ruff check .`` or ``yamllint .`` do. A path that does not exist, and a directory without
    any profile, are kept: loading them says what they are."""
    import os

    out: list[str] = []
    for p in paths:
        if not os.path.isdir(p):
            out.append(p)
            continue
        found: list[str] = []
        for root, dirs, files in os.walk(p):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            found += [os.path.join(root, f) for f in files
                      if f.endswith(PROFILE_SUFFIXES) and not f.startswith(".")]
        out += sorted(found) or [p]
    return out
