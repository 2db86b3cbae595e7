"""Profile hygiene rules: problems in how a profile is written, not in the CPU it describes."""

from __future__ import annotations

from collections.abc import Iterator
from functools import lru_cache

from cpumodel.findings import Finding
from cpumodel.resolve import Model
from cpumodel.rules import Context, all_rules, matches, rule


@lru_cache(maxsize=4096)
def _matches_some_rule(pattern: str) -> bool:
    return any(matches(i, [pattern]) for i in all_rules())


@rule("P001", "unknown-ignore", kind="profile", severity="warning",
      source="cpumodel (rule registry)")
def unknown_ignore(model: Model, ctx: Context) -> Iterator[Finding]:
    """An ``ignore:`` entry matches no rule, so it silences nothing.

    Usually a typo in a rule ID, or a rule that was renamed. ``cpumodel rules`` lists the
    IDs; entries may be exact IDs, group prefixes (``ARCH-FEAT_SVE``) or globs (``ARCH-*``).

    Bad:  ``ignore: [A0001]``
    Good: ``ignore: [A001]``
    """
    if not model.ignore:
        return
    for pattern, where in model.ignore:
        if not _matches_some_rule(pattern):
            from cpumodel.errors import suggest

            hint = suggest(pattern, list(all_rules()))
            yield Finding("P001", "warning", f"ignore entry {pattern!r} matches no rule"
                          + (f" ({hint})" if hint else ""), location=where,
                          why="it silences nothing", source="cpumodel rule registry")


@rule("P002", "guest-on-host-values", kind="profile", severity="warning", source="cpumodel; see 'cpumodel defaults'")
def guest_on_host_values(model: Model, ctx: Context) -> Iterator[Finding]:
    """A guest model takes its values from a host profile's raw register values.

    A host profile (``role: host``) records what the CPU reports; KVM never shows a guest some
    of it (e.g. AMU, SPE, MPAM, cache geometry) and refuses such values. A guest should start
    from what KVM gives a VM on that host: generate that with
    ``cpumodel defaults HOST.yaml --kernel X.Y -o base.yaml`` and use ``base: base``.

    Bad:  ``role: guest`` with ``base: neoverse-n1`` (a host profile)
    Good: ``base: neoverse-n1-kvm7.3`` (made by ``cpumodel defaults profiles/neoverse-n1.yaml``)
    """
    if model.role == "guest" and model.base_role == "host" and ctx.kvm:
        base = model.chain[-1] if model.chain else "?"
        yield Finding("P002", "warning", f"guest model based on host profile {base!r}: it inherits raw host values",
                      location=model.loc, why=f"start from 'cpumodel defaults {model.base_path}' instead",
                      source="cpumodel defaults")
