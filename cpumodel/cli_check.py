"""``cpumodel check``: the command most runs are, alone in its module so that its start-up builds the
options of no other command (loaded by :class:`cpumodel.cli._Main` on demand)."""

from __future__ import annotations

import sys

import click

from cpumodel.cli import _common, _deliver, _options


@click.command()
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
