"""The commands other than ``check`` and ``capture``: emit, show, explain, rules, kernels, diff,
baseline, errata, list, verify and defaults (loaded by :class:`cpumodel.cli._Main` when one of them runs,
or for ``--help``)."""

from __future__ import annotations

import functools
import sys

import click

from cpumodel.cli import _common, _deliver, _fail, _kernel, _options, _search_options, _vcpu
from cpumodel.errors import CpumodelError


def _resolve_many(paths: tuple[str, ...], search: tuple[str, ...], allow_outside: bool = False):  # type: ignore[no-untyped-def]
    from cpumodel.resolve import Resolver

    r = Resolver(list(search), allow_outside)
    try:
        return [r.resolve_file(p) for p in paths]
    except CpumodelError as e:
        _fail(e)


@click.command()
@click.argument("profile", type=click.Path(dir_okay=True))
@click.option("--format", "fmt", type=click.Choice(["json", "yaml", "kvm", "c-header", "firecracker", "qemu"]),
              default="json", show_default=True)
@click.option("-o", "--output", metavar="FILE", help="Write to FILE atomically instead of stdout ('-': stdout).")
@click.option("--only-changed", is_flag=True,
              help="kvm, c-header: write only the registers the model changes relative to KVM's view on the "
                   "--host(s) or its origin (firecracker templates always are).")
@click.option("--kvm-view", is_flag=True,
              help="For a role: host PROFILE: emit KVM's default view of a VM on it (as 'cpumodel defaults').")
@functools.partial(_common, hosts=True)
def emit(profile: str, fmt: str, output: str | None, only_changed: bool, kvm_view: bool, kernel: str | None,
         host: tuple[str, ...], vcpu: str | None, kvm_caps: str | None, ignore: tuple[str, ...], no_kvm: bool,
         role: str | None, search: tuple[str, ...], allow_outside: bool) -> None:
    """Emit the resolved register set of a valid PROFILE (refuses an invalid one, and a host)."""
    from cpumodel.emit import emit_file
    from cpumodel.resolve import Resolver

    resolver = Resolver(list(search), allow_outside)
    opts = _options(ignore, kernel, None, vcpu, no_kvm, list(search), role, allow_outside, kvm_caps)
    out = emit_file(profile, fmt, opts, resolver, hosts=host, only_changed=only_changed, kvm_view=kvm_view)
    if out.refused:
        from cpumodel.report import render

        render(out.refused, "text", profiles=1, stream=sys.stderr)
        click.echo(f"cpumodel: refusing to emit {profile}: the model has violations", err=True)
        sys.exit(1)
    for note in out.notes:  # what a format leaves out: one line each, no traceback
        click.echo(f"cpumodel: note: {note}", err=True)
    _deliver(out.text, output)


@click.command()
@click.argument("profile", type=click.Path(dir_okay=True))
@_search_options
@click.option("--all-fields", is_flag=True, help="Also list fields that are zero.")
def show(profile: str, search: tuple[str, ...], allow_outside: bool, all_fields: bool) -> None:
    """Decode every register of PROFILE field by field, with feature names."""
    from cpumodel.ops import highest_version
    from cpumodel.report.tables import show_model

    (model,) = _resolve_many((profile,), search, allow_outside)
    show_model(model, None if model.arch else highest_version(model), all_fields=all_fields)


@click.command()
@click.argument("spec", metavar="REGISTER[=VALUE]")
@click.option("--all-fields", is_flag=True, help="With a VALUE: also list fields that are zero.")
def explain(spec: str, all_fields: bool) -> None:
    """Show a register's layout, or decode VALUE field by field (e.g. ID_AA64PFR0_EL1=0x1100000010111112)."""
    from cpumodel.ops import decode_spec
    from cpumodel.report.tables import explain_register

    reg, value = decode_spec(spec)
    explain_register(reg, value, all_fields)


@click.command()
@click.argument("rule_id", required=False)
@click.option("--kind", type=click.Choice(["arch", "kvm", "vcpu", "profile", "identity"]),
              help="Only rules of this kind.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
def rules(rule_id: str | None, kind: str | None, fmt: str) -> None:
    """List all rules, or explain RULE_ID (e.g. A001, ARCH-FEAT_SVE-2, K003); an ID prefix or a glob
    ('ARCH-FEAT_SVE-*', as ignore: takes) lists the rules it matches."""
    from cpumodel.ops import select_rules
    from cpumodel.report.tables import explain_rule, list_rules

    found = select_rules(rule_id, kind)
    if rule_id and len(found) == 1 and found[0].id.upper() == rule_id.upper():
        explain_rule(found[0], fmt)
    else:
        list_rules(found, fmt)


@click.group(invoke_without_command=True)
@click.pass_context
def kernels(ctx: click.Context) -> None:
    """List the kernel lines whose KVM rules are modelled (built in and imported)."""
    if ctx.invoked_subcommand is None:
        from cpumodel.report.tables import list_kernels
        from cpumodel.rules.kvm_writes import describe_kernels

        list_kernels(describe_kernels())


@kernels.command("import")
@click.argument("tree", type=click.Path(file_okay=False))
@click.option("--name", help="Name for --kernel (default: the tree's release, e.g. 6.8.12).")
@click.option("--force", is_flag=True, help="Replace an imported kernel of that name.")
def kernels_import(tree: str, name: str | None, force: bool) -> None:
    """Generate the KVM rules of a Linux source tree, check them and store them for --kernel."""
    from pathlib import Path

    from cpumodel.kvm.rules import import_kernel

    try:
        e, overlay = import_kernel(Path(tree), name, force=force)
    except KeyError as exc:
        _fail(CpumodelError(str(exc), hint=getattr(exc, "hint", None)))
    click.echo(f"imported Linux {e.release} as {e.name!r} ({e.path}); overlay of line {overlay}, every quote "
               f"found in this tree; use --kernel {e.name}")


@click.command()
@click.argument("a", type=click.Path(dir_okay=True))
@click.argument("b", type=click.Path(dir_okay=True), required=False)
@click.option("--migratable", is_flag=True,
              help="Judge whether a guest started with model A can run on host/model B.")
@click.option("--kernel", metavar="X.Y", help="Kernel whose field policies apply (default: newest modelled).")
@click.option("--to-kernel", "to_kernel", metavar="X.Y",
              help="Kernel upgrade on host A: KVM's default view under --kernel vs this one, and whether a guest "
                   "saved under --kernel (its default view, or profile B) restores (exit 1 if not).")
@click.option("--vcpu-features", "vcpu", metavar="LIST", help="With --to-kernel: the guest's vCPU features "
              "(default: those host A advertises).")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@_search_options
def diff(a: str, b: str | None, migratable: bool, kernel: str | None, to_kernel: str | None, vcpu: str | None,
         fmt: str, search: tuple[str, ...], allow_outside: bool) -> None:
    """Compare two CPU models field by field; exit 0 if equal (or migratable), 1 if not.

    With --to-kernel: what upgrading host A's kernel from --kernel to --to-kernel changes for guests."""
    from cpumodel import ops
    from cpumodel.report.tables import show_diff, show_migration, show_upgrade

    if to_kernel is not None:
        from cpumodel.upgrade import upgrade_of

        models = _resolve_many((a,) if b is None else (a, b), search, allow_outside)
        old = _kernel(kernel, models[0])
        if old is None:
            raise CpumodelError("--to-kernel needs the kernel upgraded from: --kernel X.Y (or a host profile "
                                "recording kernel_release)")
        up = upgrade_of(models[0], models[1] if b is not None else None, old, to_kernel, _vcpu(vcpu))
        show_upgrade(up, fmt)
        sys.exit(0 if up.restores_ok else 1)
    if b is None:
        _fail(CpumodelError("diff needs two profiles (or --to-kernel with one host)"))
    ma, mb = _resolve_many((a, b), search, allow_outside)
    if migratable:
        m = ops.migration(ma, mb, kernel)
        show_migration(ma, mb, m.fields, m.kernel, fmt, m.findings)
        sys.exit(0 if m.ok else 1)
    d = ops.diff(ma, mb)
    show_diff(ma, mb, d, fmt)
    sys.exit(0 if d.equal else 1)


@click.command()
@click.argument("hosts", nargs=-1, required=True, type=click.Path(dir_okay=True))
@click.option("-o", "--output", metavar="FILE", help="Write the baseline profile to FILE (atomically; '-': stdout).")
@click.option("--name", default="baseline", show_default=True, help="Name of the baseline profile.")
@click.option("--kernel", metavar="X.Y", help="Kernel whose field policies apply (default: newest modelled).")
@click.option("--target-impl", "target_impl", is_flag=True,
              help="The VMM offers the target-implementation hypercalls (6.15+: VENDOR_HYP_BMAP_2 bits set, "
                   "calls forwarded and answered): judge what the guest chooses with every host announced (I005).")
@_search_options
def baseline(hosts: tuple[str, ...], output: str | None, name: str, kernel: str | None, target_impl: bool,
             search: tuple[str, ...], allow_outside: bool) -> None:
    """The richest model safe on every given host (a migration pool's CPU model), as a profile."""
    from cpumodel.ops import checked_baseline
    from cpumodel.report.profiles import baseline_yaml

    models = _resolve_many(hosts, search, allow_outside)
    b, arch, ident = checked_baseline(models, name, kernel, target_impl)
    _deliver(baseline_yaml(b, models, name, arch, ident), output)
    findings = arch + [f for f in ident if f.severity != "info"]
    if findings:
        from cpumodel.report import render

        render(findings, "text", profiles=1, stream=sys.stderr)
        sys.exit(1)


@click.command()
@click.argument("profile", type=click.Path(dir_okay=True))
@click.option("--kernel", metavar="X.Y", help="Guest kernel line whose errata tables apply (default: newest; "
              "6.1, 6.12, 6.17, 6.18, 6.19, 7.1, 7.2, 7.3).")
@click.option("--host", metavar="HOST.yaml", help="Host CPU profile: answers the guest's Spectre firmware calls "
              "the way KVM does (from the host's own state).")
@click.option("--target-impl", "impls", multiple=True, metavar="PROFILE",
              help="An implementation the VMM announces with the target-implementation hypercall (6.15+; "
                   "repeatable): the guest then matches every erratum against all of them.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@_search_options
def errata(profile: str, kernel: str | None, host: str | None, impls: tuple[str, ...], fmt: str,
           search: tuple[str, ...], allow_outside: bool) -> None:
    """The errata workarounds and Spectre mitigations a guest kernel selects for PROFILE's MIDR/REVIDR
    and features, each with its Linux source line."""
    from cpumodel import identity
    from cpumodel.report.identity import render

    models = _resolve_many((profile, *((host,) if host else ()), *impls), search, allow_outside)
    model = models[0]
    dec = identity.for_profile(model, kernel, models[1] if host else None, models[1 + bool(host):])
    render(model.name, dec, fmt, sys.stdout)


@click.command(name="list")
@_search_options
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
def list_profiles(search: tuple[str, ...], allow_outside: bool, fmt: str) -> None:
    """List the shipped profiles (and those in -I dirs) with arch level and key features."""
    from cpumodel.ops import catalog
    from cpumodel.report.tables import list_profiles as show_list
    from cpumodel.resolve import Resolver

    show_list(catalog(Resolver(list(search), allow_outside)), fmt)


@click.command()
@click.argument("profile", type=click.Path(dir_okay=True))
@click.option("--kernel-image", metavar="PATH", help="An arm64 kernel Image to boot as the KVM host.")
@click.option("--debian-kernel", metavar="VERSION",
              help="Fetch Debian's arm64 kernel VERSION (e.g. 6.12 or 7.3.4+deb13) with apt and boot it.")
@click.option("--cpu", default="max", show_default=True, help="QEMU CPU model of the emulated host.")
@click.option("--vcpu-features", "vcpu", metavar="LIST", help="Override the profile's vcpu_features.")
@click.option("--timeout", type=float, help="Seconds before giving up on the emulated host.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@_search_options
def verify(profile: str, kernel_image: str | None, debian_kernel: str | None, cpu: str, vcpu: str | None,
           timeout: float | None, fmt: str, search: tuple[str, ...], allow_outside: bool) -> None:
    """Apply PROFILE to a real KVM (a Debian arm64 kernel under QEMU) and report each register's errno."""
    from cpumodel.report.tables import show_verify
    from cpumodel.verify import verify as do_verify

    (model,) = _resolve_many((profile,), search, allow_outside)
    try:
        report = do_verify(model, kernel_image=kernel_image, debian_kernel=debian_kernel, cpu=cpu,
                           vcpu_features=_vcpu(vcpu), timeout=timeout)
    except CpumodelError as e:
        _fail(e)
    show_verify(model, report, fmt)
    sys.exit(0 if report.ok else 1)


@click.command()
@click.argument("host", type=click.Path(dir_okay=True))
@click.option("--kernel", metavar="X.Y", help="Kernel whose KVM rules apply: X.Y, X.Y.Z, an imported name or 'host' "
              "(default: the release HOST records, else the newest modelled).")
@click.option("--vcpu-features", "vcpu", metavar="LIST",
              help="KVM_ARM_VCPU_INIT features (default: those the host advertises: pmu, sve, ptrauth).")
@click.option("--name", help="Name of the generated profile (default: <host>-kvm<kernel>).")
@click.option("-o", "--output", metavar="FILE", help="Write the profile to FILE (atomically; '-': stdout).")
@_search_options
def defaults(host: str, kernel: str | None, vcpu: str | None, name: str | None, output: str | None,
             search: tuple[str, ...], allow_outside: bool) -> None:
    """The guest model KVM gives a new VM on HOST by default, as a profile (a base for your own)."""
    from cpumodel.ops import guest_defaults
    from cpumodel.report.profiles import defaults_yaml

    (model,) = _resolve_many((host,), search, allow_outside)
    d = guest_defaults(model, _kernel(kernel, model), _vcpu(vcpu))
    _deliver(defaults_yaml(model, d.values, d.notes, d.kernel, d.features, name or f"{model.name}-kvm{d.kernel}",
                           d.hidden), output)
