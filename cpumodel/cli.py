"""Command-line interface. Each command parses its options, calls one engine function (check_paths,
emit_file, ops.*, upgrade_of, identity.for_profile, verify) and hands the result to a renderer in ``report/``.
The command group gives every command the same error form (``cpumodel: error: file:line: message``
on stderr, exit 2), turns Python warnings into ``cpumodel: note:`` lines, and ends quietly when
stdout is closed early (exit 141, as a process killed by SIGPIPE).

Exit codes (stable): 0 = all valid, 1 = a violation was found, 2 = usage or input error.
Heavy modules (rich, the feature model, KVM tables) are imported only by the commands that
need them, so ``cpumodel --version`` and a plain ``check`` start fast.
"""

from __future__ import annotations

import functools
import sys
from typing import NoReturn

import click

from cpumodel import __version__
from cpumodel.errors import CpumodelError

VCPU_CHOICES = ("pmu", "sve", "ptrauth", "el1_32bit")


def _fail(e: CpumodelError) -> NoReturn:
    """The one error form of every command: ``cpumodel: error: file:line: message`` on stderr, exit 2."""
    from cpumodel.report import error_line

    click.echo(error_line(e), err=True)
    sys.exit(2)


def _note(message: Warning | str, category: type[Warning], filename: str, lineno: int, file: object = None,
          line: str | None = None) -> None:
    """A Python warning (an output format's note, say) as one line on stderr, without Python's source line."""
    from cpumodel.escape import one_line

    sys.stderr.write(f"cpumodel: note: {one_line(str(message))}\n")


#: Exit code after stdout was closed early (``cpumodel check . | head -1``): the shell's code for
#: a process ended by SIGPIPE (128 + 13), never 1 (a violation).
EXIT_PIPE = 141


class _Main(click.Group):
    """The command group: the same error form, warning form and closed-pipe behaviour for every command."""

    def invoke(self, ctx: click.Context) -> object:
        import warnings

        with warnings.catch_warnings():
            warnings.showwarning = _note
            try:
                return super().invoke(ctx)
            except CpumodelError as e:
                _fail(e)
            except BrokenPipeError:
                _quiet_stdout()
                sys.exit(EXIT_PIPE)


def _quiet_stdout() -> None:
    """stdout's reader is gone: point the descriptor at /dev/null so the final flush cannot fail."""
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # not a real descriptor (a test runner's stream)
        pass


def _deliver(text: str, output: str | None) -> None:
    """Write ``text`` to ``output`` atomically, or to stdout (no ``-o``, or ``-o -``)."""
    if output and output != "-":
        from cpumodel.atomic import write_atomic

        write_atomic(output, text)
    else:
        sys.stdout.write(text)


def _vcpu(value: str | None) -> frozenset[str] | None:
    if value is None:
        return None
    items = frozenset(v.strip().lower() for v in value.split(",") if v.strip())
    bad = sorted(items - set(VCPU_CHOICES))
    if bad and items != {"none"}:
        raise click.BadParameter(f"unknown vCPU feature(s) {', '.join(bad)}; choose from {', '.join(VCPU_CHOICES)}")
    return frozenset() if items == {"none"} else items


def _caps(value: str | None) -> frozenset[str] | None:
    from cpumodel.profile import KVM_CAPS

    if value is None:
        return None
    items = frozenset(v.strip().lower() for v in value.split(",") if v.strip())
    bad = sorted(items - set(KVM_CAPS) - {"none"})
    if bad:
        raise click.BadParameter(f"unknown KVM capability {', '.join(bad)}; choose from {', '.join(KVM_CAPS)}")
    return frozenset(items - {"none"})


def _options(ignore: tuple[str, ...], kernel: str | None, host: str | None, vcpu: str | None,
             no_kvm: bool, search: list[str], role: str | None = None,
             allow_outside: bool = False, kvm_caps: str | None = None):  # type: ignore[no-untyped-def]
    from cpumodel.check import Options

    host_model = None
    if host:
        from cpumodel.resolve import Resolver

        host_model = Resolver(search, allow_outside).resolve_file(host)
    kernel = _kernel(kernel, host_model)
    if kernel is not None:
        from cpumodel.rules import kvm_writes as kvm

        kvm.kernel_rules(kernel)  # validates the version early, with a clear message
    return Options(ignore=list(ignore), kernel=kernel, host=host_model, vcpu_features=_vcpu(vcpu),
                   kvm=not no_kvm, role=role, kvm_caps=_caps(kvm_caps))


def _kernel(kernel: str | None, host_model) -> str | None:  # type: ignore[no-untyped-def]
    """--kernel, with 'host' (or no --kernel) meaning the host profile's recorded kernel_release."""
    recorded = getattr(host_model, "kernel_release", "") if host_model is not None else ""
    if kernel is None and not recorded:
        return None  # nothing to pick; and a check of host CPUs needs no KVM code (start-up cost)
    from cpumodel.kvm.rules import pick_kernel

    where = getattr(host_model, "path", "") or "the host profile"
    try:
        return pick_kernel(kernel, recorded, where)
    except KeyError as exc:
        raise CpumodelError(str(exc), hint=getattr(exc, "hint", None)) from None


def _search_options(fn):  # type: ignore[no-untyped-def]
    """-I and --allow-base-outside: where base: profiles are found (every command that reads profiles)."""
    fn = click.option("--allow-base-outside", "allow_outside", is_flag=True,
                      help="Let base: name absolute paths and files outside the search path "
                           "(refused by default: profiles are untrusted).")(fn)
    return click.option("-I", "--profile-path", "search", multiple=True, metavar="DIR",
                        help="Directory to look up base: profiles in (repeatable; also $CPUMODEL_PATH, "
                             "then the shipped profiles).")(fn)


def _common(fn, hosts: bool = False):  # type: ignore[no-untyped-def]
    """Options shared by the commands that check a model (``hosts``: --host is repeatable)."""
    host_help = ("Host CPU profile for host-relative KVM rules; repeatable: a template targets every host given "
                 "(default: the profile's origin, see README 'Emitting').") if hosts else \
        "Host CPU profile for host-relative KVM rules."
    for deco in reversed([
        click.option("--kernel", metavar="X.Y", help="Kernel whose KVM rules apply (default: newest modelled; "
                     "see 'cpumodel kernels')."),
        click.option("--host", metavar="HOST.yaml", multiple=hosts, help=host_help),
        click.option("--vcpu-features", "vcpu", metavar="LIST",
                     help="KVM_ARM_VCPU_INIT features the VMM sets: comma list of pmu,sve,ptrauth,el1_32bit "
                          "(or 'none'); overrides the profile's vcpu_features."),
        click.option("--kvm-caps", "kvm_caps", metavar="LIST",
                     help="VM capabilities the VMM enables with KVM_ENABLE_CAP: writable_imp_id_regs "
                          "(or 'none'); overrides the profile's kvm_caps."),
        click.option("--ignore", multiple=True, metavar="RULE",
                     help="Silence a rule ID, group prefix or glob (repeatable)."),
        click.option("--no-kvm", is_flag=True, help="Check architecture rules only."),
        click.option("--role", type=click.Choice(["guest", "host"]),
                     help="Treat every profile as a guest model (all rules) or a host CPU (architecture rules)."),
    ]):
        fn = deco(fn)
    return _search_options(fn)


@click.group(cls=_Main, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="cpumodel")
def main() -> None:
    """Check and emit arm64 KVM guest CPU models (ID registers).

    Profiles are YAML files (see profiles/ and 'cpumodel explain'); every value is checked
    against the Arm architecture, the KVM rules of a kernel, and the vCPU features.
    """


@main.command()
@click.argument("profiles", nargs=-1, required=True, type=click.Path(dir_okay=True))
@click.option("--format", "fmt", type=click.Choice(["text", "json", "github", "sarif", "junit"]),
              default="text", show_default=True)
@_common
@click.option("-o", "--output", metavar="FILE", help="Write the report to FILE (atomically; '-': stdout).")
@click.option("-q", "--quiet", is_flag=True, help="One line per finding; no details.")
@click.option("--statistics", is_flag=True, help="Count findings per rule.")
@click.option("--exit-zero", is_flag=True, help="Exit 0 even when violations are found.")
@click.option("--strict", is_flag=True, help="Warnings fail the run too.")
@click.option("-j", "--jobs", type=click.IntRange(min=0), default=0, metavar="N",
              help="Check many files in N worker processes (default 0: one per idle usable core; 1: none). "
                   "The output is the same either way.")
def check(profiles: tuple[str, ...], fmt: str, kernel: str | None, host: str | None, vcpu: str | None,
          kvm_caps: str | None, ignore: tuple[str, ...], no_kvm: bool, role: str | None, search: tuple[str, ...],
          allow_outside: bool, output: str | None, quiet: bool, statistics: bool, exit_zero: bool, strict: bool,
          jobs: int) -> None:
    """Check profiles (files, or directories searched for *.yaml/*.yml); exit 0 if all are valid,
    1 on any violation, 2 on unreadable input."""
    import io

    from cpumodel.check import check_paths, expand_paths
    from cpumodel.report import renderer

    opts = _options(ignore, kernel, host, vcpu, no_kvm, list(search), role, allow_outside, kvm_caps)
    paths = expand_paths(list(profiles))
    to_file = output not in (None, "-")
    buf = io.StringIO() if to_file else None
    report = renderer(fmt, buf or sys.stdout, err=sys.stderr, statistics=statistics, quiet=quiet, strict=strict)
    result = check_paths(paths, opts, list(search), allow_outside=allow_outside, sink=report.add,
                         on_error=report.error, jobs=jobs)
    report.finish(len(paths))
    if buf is not None:
        _deliver(buf.getvalue(), output)
    if report.unreadable:
        sys.exit(2)
    failed = result.failed or (strict and result.severities.get("warning", 0) > 0)
    sys.exit(1 if failed and not exit_zero else 0)


@main.command()
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


@main.command()
@click.argument("profile", type=click.Path(dir_okay=True))
@_search_options
@click.option("--all-fields", is_flag=True, help="Also list fields that are zero.")
def show(profile: str, search: tuple[str, ...], allow_outside: bool, all_fields: bool) -> None:
    """Decode every register of PROFILE field by field, with feature names."""
    from cpumodel.ops import highest_version
    from cpumodel.report.tables import show_model

    (model,) = _resolve_many((profile,), search, allow_outside)
    show_model(model, None if model.arch else highest_version(model), all_fields=all_fields)


@main.command()
@click.argument("spec", metavar="REGISTER[=VALUE]")
@click.option("--all-fields", is_flag=True, help="With a VALUE: also list fields that are zero.")
def explain(spec: str, all_fields: bool) -> None:
    """Show a register's layout, or decode VALUE field by field (e.g. ID_AA64PFR0_EL1=0x1100000010111112)."""
    from cpumodel.ops import decode_spec
    from cpumodel.report.tables import explain_register

    reg, value = decode_spec(spec)
    explain_register(reg, value, all_fields)


@main.command()
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


@main.group(invoke_without_command=True)
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


def _resolve_many(paths: tuple[str, ...], search: tuple[str, ...], allow_outside: bool = False):  # type: ignore[no-untyped-def]
    from cpumodel.resolve import Resolver

    r = Resolver(list(search), allow_outside)
    try:
        return [r.resolve_file(p) for p in paths]
    except CpumodelError as e:
        _fail(e)


@main.command()
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


@main.command()
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


@main.command()
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


@main.command(name="list")
@_search_options
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
def list_profiles(search: tuple[str, ...], allow_outside: bool, fmt: str) -> None:
    """List the shipped profiles (and those in -I dirs) with arch level and key features."""
    from cpumodel.ops import catalog
    from cpumodel.report.tables import list_profiles as show_list
    from cpumodel.resolve import Resolver

    show_list(catalog(Resolver(list(search), allow_outside)), fmt)


@main.command()
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


def _register_optional_commands() -> None:
    from cpumodel.cli_capture import capture

    main.add_command(capture)


_register_optional_commands()



@main.command()
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
