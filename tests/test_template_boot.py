"""Templates proved at boot: replay the real kernels' answers (tests/oracle/templates/) against the emitter.

``tools/template_boot.py`` booted Debian's arm64 kernels under QEMU 7.2 (``-cpu max``, ``neoverse-n1``,
``cortex-a72``, ``a64fx``), read KVM's default view of a VM on each, applied each scenario's template
to it as a VMM does and recorded what KVM_SET_ONE_REG answered. Here, without QEMU, the emitter runs
again: every write it makes today must be in the recording (else re-record), and KVM must have
accepted it on every CPU the scenario targets. Re-record with
``flock /work/qemu.lock python -m tools.template_boot record``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cpumodel.oracle import load_recording
from cpumodel.resolve import Resolver
from tools.template_boot import CPUS, OUT, SCENARIOS, V1N1, VM_FEATURES, Scenario, capture_path, writes

RECORDINGS = sorted(OUT.glob("*.json.gz"))
RELEASES = sorted({p.name.split("_")[0] for p in RECORDINGS})


def _origin_support() -> bool:
    from cpumodel.template import is_origin

    return is_origin(Resolver().resolve_file(str(Path(__file__).parents[1] / "profiles" / "neoverse-v1-kvm7.3.yaml")))


def test_recordings_are_there() -> None:
    assert RELEASES, "no recordings in tests/oracle/templates/"
    for release in RELEASES:
        assert {p.name for p in RECORDINGS if p.name.startswith(f"{release}_")} == {
            f"{release}_{cpu}.json.gz" for cpu in CPUS}


@pytest.mark.parametrize("release", RELEASES)
@pytest.mark.parametrize("sc", SCENARIOS, ids=lambda s: s.name)
def test_template_is_accepted_by_the_real_kernel(sc: Scenario, release: str) -> None:
    if sc.needs_origin and not _origin_support():
        pytest.skip("profiles cannot say 'origin: kvm-defaults' yet: the template is not relative to its origin")
    line = ".".join(release.split(".")[:2])
    for cpu in CPUS:
        rec = load_recording(OUT / f"{release}_{cpu}.json.gz")
        fs = rec.feature_set(VM_FEATURES)
        answers = {(c.reg, c.value): c.errno for c in rec.cases}
        got = writes(sc, line, release, fs.defaults)
        assert got or sc.name.startswith("pool"), f"{sc.name} writes nothing on {cpu}"
        missing = {r: hex(v) for r, v in got.items() if (r, v) not in answers}
        assert not missing, f"{sc.name} on {cpu} ({release}): writes not recorded (re-record): {missing}"
        if cpu in sc.accepted_on:
            refused = {r: answers[(r, v)] for r, v in got.items() if answers[(r, v)] != 0}
            assert not refused, f"{sc.name} refused on {cpu} ({release}): {refused}"
        if sc.needs_origin:  # the emitter's V1N1 is Firecracker's own: the same writes on every CPU
            assert got == writes(sc, line, release, fs.defaults, v1n1_constants=True)


@pytest.mark.parametrize("release", RELEASES)
def test_pool_template_is_minimal_and_says_what_differs(release: str) -> None:
    """The pool template writes only fields (x elsewhere), and names the fields KVM will not equalise."""
    from cpumodel.template import make_template

    r = Resolver([str(OUT)])
    for sc in (s for s in SCENARIOS if s.hosts):
        model = r.resolve_file(str(OUT / sc.profile.format(release=release)))
        hosts = [r.resolve_file(str(capture_path(release, cpu))) for cpu in sc.hosts]
        tpl = make_template(model, hosts=hosts, kernel=".".join(release.split(".")[:2]),
                            vcpu_features=frozenset())
        assert tpl.writes and all(w.mask != (1 << 64) - 1 for w in tpl.writes)
        assert "MIDR_EL1" not in {w.register.name for w in tpl.writes}


def test_pool_template_through_the_cli() -> None:
    """What the user runs: emit the recorded pool for both captured hosts; it parses as Firecracker does."""
    from click.testing import CliRunner
    from test_emit_formats import fc_check

    from cpumodel.cli import main

    release = RELEASES[-1]
    sc = next(s for s in SCENARIOS if s.hosts)
    args = ["emit", str(OUT / sc.profile.format(release=release)), "--format", "firecracker", "--vcpu-features",
            "none", "--kernel", ".".join(release.split(".")[:2]), "-I", str(OUT)]
    for cpu in sc.hosts:
        args += ["--host", str(capture_path(release, cpu))]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    assert fc_check(json.loads(res.stdout))
    # where the guests' views still differ is said, as one plain line (not a Python warning)
    assert "cpumodel: note: firecracker: left out ID_AA64PFR0_EL1.AdvSIMD, FP" in res.stderr
    assert "EmitNote" not in res.stderr


def test_v1n1_constants_are_firecrackers() -> None:
    from test_emit_formats import V1N1 as QUOTED

    assert {r: (f, v) for r, f, v in QUOTED} == V1N1


def test_every_shipped_guest_profile_is_proved() -> None:
    """Each shipped guest profile is a scenario here, or its template writes nothing (KVM's own view)."""
    from cpumodel.template import make_template

    profiles = Path(__file__).parents[1] / "profiles"
    proved = {sc.profile for sc in SCENARIOS}
    r = Resolver()
    for path in sorted(profiles.glob("*.yaml")):
        model = r.resolve_file(str(path))
        if model.role != "guest" or f"profiles/{path.name}" in proved:
            continue
        tpl = make_template(model, kernel="7.3", vcpu_features=frozenset(), resolver=r)
        assert tpl.references and not tpl.writes, f"{path.name}: a template with writes is not proved at boot"
