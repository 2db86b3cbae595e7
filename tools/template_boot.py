"""Prove emitted templates at boot: apply them to a real KVM (the oracle) and record its answers.

    flock /work/qemu.lock python -m tools.template_boot record [--kernel 7.3 ...] [--cpu max ...]
    python -m tools.template_boot regen     # rewrite the views and pools from the recordings

Per kernel, for the oracle's QEMU CPUs (``max``, ``neoverse-n1``, ``cortex-a72``, ``a64fx``):

1. boot each CPU once with no cases: the probe reads KVM's default view of a VM (no vCPU
   feature, an in-kernel GICv3 as Firecracker and QEMU create one) with KVM_GET_ONE_REG, what
   ``cpumodel capture`` reads from /dev/kvm. Each view is written as a host profile
   (``<release>_<cpu>.kvm.yaml``), and the views of a pool's CPUs are folded into its baseline
   (``<release>_<pool>.yaml``, ``ops.baseline``) as ``cpumodel baseline`` does;
2. emit each scenario's template with cpumodel (``cpumodel/template.py``, what ``cpumodel emit``
   writes, hosts given as ``--host``) and apply each write to the CPU's default view as a VMM
   does (Firecracker: ``(current & !filter) | value``);
3. boot again and write each resulting register value with KVM_SET_ONE_REG (one case per
   register; the probe writes the default back after each accepted write, so every write is
   judged against KVM's untouched view, as the first write of a template is).

The recordings go to ``tests/oracle/templates/<release>_<cpu>.json.gz`` (small: the defaults
and a few dozen cases); ``tests/test_template_boot.py`` replays them against the emitter without
QEMU: every write the emitter makes today must be in the recording, and accepted on every CPU of
the scenario's pool.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "tests" / "oracle" / "templates"
#: QEMU 7.2 CPU models the oracle boots (qemu-system-aarch64 -cpu help) that cpumodel has a profile for.
CPUS = ("max", "neoverse-n1", "cortex-a72", "a64fx")
KERNELS = ("6.12", "6.19", "7.2", "7.3")
#: Firecracker creates a GIC before running vCPUs; the probe's 'vgic' does the same (cpumodel/oracle/cases.py).
VM_FEATURES = frozenset({"vgic"})
#: Firecracker's static V1N1 template (filter, value) per register: static_cpu_templates/v1n1.rs fn v1n1()
#: at firecracker-microvm/firecracker 074a6530a401b46a616ec3f0f55ff88f2b2c5d65 (tests/test_emit_formats.py
#: checks that the emitter's firecracker-v1n1 template equals it bit by bit).
V1N1 = {"ID_AA64PFR0_EL1": (0x000F000F00000000, 0x0),
        "ID_AA64ISAR0_EL1": (0xF0FF0FFF0000F000, 0x0000000000001000),
        "ID_AA64ISAR1_EL1": (0x00FFF00000FFF00F, 0x0000000000100001),
        "ID_AA64MMFR2_EL1": (0x0000000F00000000, 0x0)}


@dataclass(frozen=True)
class Scenario:
    """A template to prove: ``cpumodel emit PROFILE [--host H ...] --vcpu-features none``."""

    name: str
    profile: str  # relative to the repository; {release} is replaced
    hosts: tuple[str, ...] = ()  # QEMU CPUs whose captured KVM views are given as --host (a pool)
    accepted_on: tuple[str, ...] = ()  # QEMU CPUs on which every write must be accepted
    needs_origin: bool = False  # relative to the profile's origin (origin: kvm-defaults, issue 9)


SCENARIOS = (
    # Firecracker's V1N1 on the shipped profile. Its pool is Neoverse V1 hosts, which QEMU 7.2 does not model;
    # it must also boot where every field it keeps is there: max (a superset of V1) and Neoverse N1 (what V1N1
    # makes a V1 look like). Cortex-A72 lacks LRCPC and DC CVAP (DPB) and A64FX LRCPC, which V1N1 keeps at 1.
    Scenario("firecracker-v1n1", "profiles/firecracker-v1n1.yaml", accepted_on=("max", "neoverse-n1"),
             needs_origin=True),
    # the baseline of two oracle CPUs (their captured KVM views), emitted for both
    Scenario("pool-n1-a72", "{release}_pool-n1-a72.yaml", hosts=("neoverse-n1", "cortex-a72"),
             accepted_on=("neoverse-n1", "cortex-a72")),
    Scenario("pool-max-a64fx", "{release}_pool-max-a64fx.yaml", hosts=("max", "a64fx"), accepted_on=("max", "a64fx")),
)
POOLS = {sc.name: sc.hosts for sc in SCENARIOS if sc.hosts}


def capture_path(release: str, cpu: str) -> Path:
    return OUT / f"{release}_{cpu}.kvm.yaml"


def capture_yaml(release: str, cpu: str, defaults: dict[str, int | None]) -> str:
    """A recorded KVM view as a profile (the registers cpumodel's database names)."""
    from cpumodel import regdb
    from cpumodel.yamlout import Writer

    db = regdb.load()
    w = Writer()
    w.comment(f"KVM's default view of a VM (no vCPU feature, in-kernel GICv3) on QEMU -cpu {cpu}, Linux {release},")
    w.comment(f"read with KVM_GET_ONE_REG by the oracle probe: {release}_{cpu}.json.gz (tools/template_boot.py)")
    w.value("name", f"qemu-{cpu}-kvm{release}")
    w.word("role", "host")
    w.word("origin", "kvm-defaults")
    w.value("description", f"KVM {release}'s view of a VM on QEMU's {cpu}, as recorded")
    w.flow("vcpu_features", [])
    w.mapping("registers")
    rows = sorted(((db.registers[n], v) for n, v in defaults.items() if n in db.registers and v is not None
                   and n != "DCZID_EL0"), key=lambda rv: rv[0].encoding)
    for r, v in rows:
        w.hex(r.name, v, indent=2)
    return w.text()


def writes(sc: Scenario, kernel: str, release: str, defaults: dict[str, int | None], *,
           v1n1_constants: bool = False) -> dict[str, int]:
    """register -> the value a VMM writes for ``sc`` on a host whose KVM view is ``defaults``."""
    from cpumodel.resolve import Resolver
    from cpumodel.template import make_template

    out: dict[str, int] = {}
    if v1n1_constants:
        for reg, (filt, value) in V1N1.items():
            cur = defaults.get(reg)
            if cur is not None:
                out[reg] = (cur & ~filt) | value
        return out
    r = Resolver([str(OUT)])
    path = REPO / sc.profile if "/" in sc.profile else OUT / sc.profile.format(release=release)
    model = r.resolve_file(str(path))
    hosts = [r.resolve_file(str(capture_path(release, cpu))) for cpu in sc.hosts]
    tpl = make_template(model, hosts=hosts, kernel=kernel, vcpu_features=frozenset(), resolver=r)
    for w in tpl.writes:
        cur = defaults.get(w.register.name)
        if cur is not None:
            out[w.register.name] = w.apply(cur)
    return out


def pool_yaml(name: str, release: str, kernel: str, cpus: tuple[str, ...]) -> str:
    from cpumodel.ops import baseline
    from cpumodel.report.profiles import baseline_yaml
    from cpumodel.resolve import Resolver

    views = [Resolver().resolve_file(str(capture_path(release, cpu))) for cpu in cpus]
    # the views already are KVM's: fold them as they are (kvm=False), as 'baseline' does over KVM views
    return baseline_yaml(baseline(views, kernel, kvm=False), views, f"{name}-{release}")


def record(kernel_spec: str, cpus: tuple[str, ...]) -> None:
    from cpumodel.oracle import Case, get_kernel, run_cases, save_recording
    from cpumodel.oracle.sysregs import encoding_of

    info = get_kernel(kernel_spec)
    line = ".".join(info.abi.split(".")[:2]) if hasattr(info, "abi") else ".".join(kernel_spec.split(".")[:2])
    defaults: dict[str, dict[str, int | None]] = {}
    release = ""
    for cpu in CPUS:  # every pool needs its hosts' views
        first = run_cases(info.image, cpu, [], [VM_FEATURES], kernel=info)
        fs = first.feature_set(VM_FEATURES)
        if not fs.accepted:
            raise SystemExit(f"{cpu}: KVM_ARM_VCPU_INIT refused ({fs.init_errno})")
        release = str(first.kernel.get("release", kernel_spec)).split("+")[0]
        defaults[cpu] = fs.defaults
        OUT.mkdir(parents=True, exist_ok=True)
        capture_path(release, cpu).write_text(capture_yaml(release, cpu, fs.defaults))
    line = ".".join(release.split(".")[:2])
    for name, pool_cpus in POOLS.items():
        (OUT / f"{release}_{name}.yaml").write_text(pool_yaml(name, release, line, pool_cpus))
    for cpu in cpus:
        cases: dict[tuple[str, int], Case] = {}
        for sc in SCENARIOS:
            got = writes(sc, line, release, defaults[cpu], v1n1_constants=sc.needs_origin)
            for reg, value in got.items():
                cases.setdefault((reg, value), Case(encoding_of(reg), value, VM_FEATURES))
        rec = run_cases(info.image, cpu, list(cases.values()), [VM_FEATURES], kernel=info)
        if rec.feature_set(VM_FEATURES).defaults != defaults[cpu]:
            raise SystemExit(f"{cpu}: KVM's defaults changed between two boots")
        path = OUT / f"{release}_{cpu}.json.gz"
        save_recording(rec, path)
        refused = [c for c in rec.cases if c.errno != 0]
        print(f"{path.name}: {len(rec.cases)} writes, {len(refused)} refused"
              + "".join(f"\n  {c.reg} = {c.value:#018x}: {c.errno}" for c in refused), file=sys.stderr)


def regen() -> None:
    """Rewrite the captured views and the pools from the recordings' defaults (no QEMU)."""
    from cpumodel.oracle import load_recording

    releases = sorted({p.name.split("_")[0] for p in OUT.glob("*.json.gz")})
    for release in releases:
        for cpu in CPUS:
            rec = load_recording(OUT / f"{release}_{cpu}.json.gz")
            capture_path(release, cpu).write_text(capture_yaml(release, cpu, rec.feature_set(VM_FEATURES).defaults))
        for name, pool_cpus in POOLS.items():
            (OUT / f"{release}_{name}.yaml").write_text(
                pool_yaml(name, release, ".".join(release.split(".")[:2]), pool_cpus))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tools.template_boot", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    rp = sub.add_parser("record", help="boot the oracle and record the templates' writes")
    rp.add_argument("--kernel", action="append", help=f"kernel line or Debian ABI (default: {', '.join(KERNELS)})")
    rp.add_argument("--cpu", action="append", choices=CPUS, help="QEMU CPU to record (default: all)")
    sub.add_parser("regen", help="rewrite the .kvm.yaml views and the pools from the recordings (no QEMU)")
    args = ap.parse_args(argv)
    if args.cmd == "regen":
        regen()
        return 0
    for k in args.kernel or KERNELS:
        record(k, tuple(args.cpu or CPUS))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
