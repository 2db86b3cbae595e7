"""Profile hygiene rules: problems in how a profile is written, not in the CPU it describes."""

from __future__ import annotations

from collections.abc import Iterator

from cpumodel.findings import Finding
from cpumodel.resolve import Model
from cpumodel.rules import Context, all_rules, matches, rule


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
    ids = list(all_rules())
    for pattern, where in model.ignore:
        if not any(matches(i, [pattern]) for i in ids):
            from cpumodel.errors import suggest

            hint = suggest(pattern, ids)
            yield Finding("P001", "warning", f"ignore entry {pattern!r} matches no rule"
                          + (f" ({hint})" if hint else ""), location=where,
                          why="it silences nothing", source="cpumodel rule registry")
