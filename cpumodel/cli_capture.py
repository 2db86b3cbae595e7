"""``cpumodel capture``: the command-line side of :mod:`cpumodel.capture` (registered by ``cli.main``)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import NoReturn

import click

from cpumodel.errors import CpumodelError

SOURCE_CHOICES = ("auto", "kvm", "sysfs", "mrs")


def _fail(e: CpumodelError) -> NoReturn:
    click.echo(f"cpumodel: error: {e}", err=True)
    sys.exit(2)


@click.command()
@click.option("-o", "--output", metavar="FILE", help="Write the profile to FILE (atomically) instead of stdout.")
@click.option("--name", metavar="NAME", help="Profile name (default: the output file's stem, else 'captured').")
@click.option("--source", "sources", type=click.Choice(SOURCE_CHOICES), multiple=True,
              help="Where to read the registers: kvm (KVM_GET_ONE_REG defaults of a scratch vCPU, best for a "
                   "KVM host), sysfs (per-CPU MIDR/REVIDR/AIDR), mrs (Linux's EL0 MRS emulation: user-visible "
                   "fields only) or auto (kvm, sysfs, mrs, whichever work). Repeat to combine; earlier ones "
                   "win per register.  [default: auto]")
@click.option("--sysfs-root", metavar="DIR",
              help="Read a saved sysfs tree (DIR/sys/devices/system/cpu/...) instead of this machine; "
                   "only the sysfs source then applies.")
@click.option("--cpu", type=click.IntRange(min=0), metavar="N",
              help="Take the identification registers of cpu N (sysfs) and run MRS on it; needed when the "
                   "CPUs differ (big.LITTLE).")
def capture(output: str | None, name: str | None, sources: tuple[str, ...], sysfs_root: str | None,
            cpu: int | None) -> None:
    """Capture this arm64 Linux machine's ID registers as a profile.

    The profile's comments and 'sources' say which source gave each value and what that source
    hides (the MRS emulation and KVM sanitise ID registers). It says what it is: the CPU as its
    kernel shows it (sysfs, mrs: role: host, origin: cpu; the fields MRS hid under 'unseen:') or,
    with kvm, KVM's view of a new VM on this host (role: guest, origin: kvm-defaults).
    """
    from cpumodel import capture as engine

    if "auto" in sources and len(sources) > 1:
        raise click.BadParameter("'auto' cannot be combined with other sources", param_hint="--source")
    try:
        captured = engine.capture(None if not sources or sources == ("auto",) else list(sources),
                                  root=sysfs_root or "/", cpu=cpu)
        text = engine.to_profile_yaml(captured, name or (Path(output).stem if output else "captured"))
        if output:
            from cpumodel.atomic import write_atomic

            write_atomic(output, text)
        else:
            click.echo(text, nl=False)
    except CpumodelError as e:
        _fail(e)
    click.echo(f"cpumodel: {engine.summary(captured)}" + (f"; wrote {output}" if output else ""), err=True)
