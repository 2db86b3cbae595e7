"""Command-line interface: the command group and the options its commands share. Each command parses
its options, calls one engine function (check_paths, emit_file, ops.*, upgrade_of, identity.for_profile,
verify) and hands the result to a renderer in ``report/``. The command group gives every command the same
error form (``cpumodel: error: file:line: message`` on stderr, exit 2), turns Python warnings into
``cpumodel: note:`` lines, and ends quietly when stdout is closed early (exit 141, as a process killed
by SIGPIPE).

The group is lazy: the commands are declared in ``cli_check.py`` (check), ``cli_commands.py`` (the
others) and ``cli_capture.py`` (capture), and only the module of the command run is imported, so a
one-profile ``check`` does not build the options of a dozen commands it does not run. ``--help``,
shell completion and an unknown command's "Did you mean" load them all.

Exit codes (stable): 0 = all valid, 1 = a violation was found, 2 = usage or input error.
Heavy modules (rich, the feature model, KVM tables) are imported only by the commands that
need them, so ``cpumodel --version`` and a plain ``check`` start fast.
"""

from __future__ import annotations

import importlib
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


#: Every command: name -> (module, attribute). A command's module is imported when it is looked up.
COMMANDS: dict[str, tuple[str, str]] = {
    "check": ("cpumodel.cli_check", "check"),
    "emit": ("cpumodel.cli_commands", "emit"),
    "show": ("cpumodel.cli_commands", "show"),
    "explain": ("cpumodel.cli_commands", "explain"),
    "rules": ("cpumodel.cli_commands", "rules"),
    "kernels": ("cpumodel.cli_commands", "kernels"),
    "diff": ("cpumodel.cli_commands", "diff"),
    "baseline": ("cpumodel.cli_commands", "baseline"),
    "errata": ("cpumodel.cli_commands", "errata"),
    "list": ("cpumodel.cli_commands", "list_profiles"),
    "verify": ("cpumodel.cli_commands", "verify"),
    "capture": ("cpumodel.cli_capture", "capture"),
    "defaults": ("cpumodel.cli_commands", "defaults"),
}


class _Main(click.Group):
    """The command group: the same error form, warning form and closed-pipe behaviour for every command;
    its commands (:data:`COMMANDS`) are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS.keys() | self.commands.keys())

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in COMMANDS:
            module, attribute = COMMANDS[cmd_name]
            self.add_command(getattr(importlib.import_module(module), attribute), cmd_name)
        return self.commands.get(cmd_name)

    def resolve_command(
            self, ctx: click.Context, args: list[str]) -> tuple[str | None, click.Command | None, list[str]]:
        if args and args[0] not in COMMANDS:  # unknown: click suggests ("Did you mean ...?") from the commands
            for name in COMMANDS:            # the group holds, so load them all first
                self.get_command(ctx, name)
        return super().resolve_command(ctx, args)

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


#: The collector's first-generation threshold for a command's process (Python's default: 700). Start-up
#: allocates tens of thousands of container objects that live until the process ends (the constraint
#: program's tables, the register database, click's declarations); at 700 the collector walks them over
#: and over for nothing (~15M instructions of a one-profile check, 4% of it). At 30,000 it still runs
#: every 30,000 allocations, so the cycles a long run makes are collected and memory stays flat.
GC_THRESHOLD = 30_000


def run() -> NoReturn:
    """The process entry point (the ``cpumodel`` script and ``python -m cpumodel``): :data:`main`, with
    the collector tuned for a short-lived process and the process ended without the interpreter's
    teardown, which frees every object one by one (~30M instructions, 8% of a one-profile check)."""
    import gc

    gc.set_threshold(GC_THRESHOLD, 10, 10)
    try:
        main.main()
    except SystemExit as e:
        _exit(e.code)
    _exit(0)


def _exit(code: object) -> NoReturn:
    """Exit with ``code`` by ``os._exit`` after flushing stdout and stderr, when nothing is left that a
    normal exit would run: no atexit callback (logging, multiprocessing, temporary files register
    one), no other thread and no thread-exit hook (a process pool's). Otherwise, and when a flush
    fails (Python then reports it as usual), a normal ``sys.exit``."""
    import atexit
    import os

    if code is None:
        code = 0
    if not isinstance(code, int):
        sys.exit(code)  # a message: Python prints it, exit 1
    threading = sys.modules.get("threading")
    ncallbacks = getattr(atexit, "_ncallbacks", None)
    if ncallbacks is None or ncallbacks() or (threading is not None and (
            threading.active_count() > 1 or getattr(threading, "_threading_atexits", [None]))):
        sys.exit(code)
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except BaseException:  # the normal exit reports it, with its usual exit code
        sys.exit(code)
    os._exit(code & 0xFF)  # as sys.exit: the status is the low byte
