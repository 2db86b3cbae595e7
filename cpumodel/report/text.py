"""Human-readable findings, like a linter: ``file:line:col: RULE severity message``.

Everything from a profile (file names, names, values quoted in messages) is shown through
``escape.one_line``: no control character or bidirectional override reaches the terminal.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TextIO

from cpumodel.escape import one_line
from cpumodel.findings import Finding
from cpumodel.report import Renderer

_COLORS = {"error": "\033[1;31m", "warning": "\033[1;33m", "info": "\033[36m"}
_BOLD, _DIM, _RESET = "\033[1m", "\033[2m", "\033[0m"


def _fmt_int(v: int | None) -> str:
    return "" if v is None else f"{v:#x}"


class TextRenderer(Renderer):
    """Streams findings as they come (memory stays flat however many profiles are checked)."""

    def __init__(self, out: TextIO, *, color: bool = False, **kw: object) -> None:
        super().__init__(out, **kw)  # type: ignore[arg-type]
        self.color = color

    def _c(self, code: str, text: str) -> str:
        return f"{code}{text}{_RESET}" if self.color else text

    def add(self, findings: Sequence[Finding]) -> None:
        super().add(findings)
        c, out = self._c, self.out
        for f in findings:
            where = one_line(str(f.location) if f.location else f.profile)
            out.write(f"{c(_BOLD, where)}: {c(_COLORS.get(f.severity, ''), f.rule)} {f.severity}: "
                      f"{one_line(f.message)}\n")
            if self.quiet:
                continue
            details = []
            if f.asked is not None:
                details.append(f"asked {_fmt_int(f.asked)}")
            if f.host_value is not None:
                details.append(f"host {_fmt_int(f.host_value)}")
            if f.allowed:
                details.append(f"allowed {f.allowed}")
            if f.policy:
                details.append(f"policy {f.policy}")
            if f.kernel:
                details.append(f"kernel {f.kernel}")
            if f.errno:
                details.append(f"KVM returns {f.errno}")
            if details:
                out.write(c(_DIM, "    " + one_line("; ".join(details))) + "\n")
            if f.why:
                out.write(c(_DIM, f"    why: {one_line(f.why)}") + "\n")
            if f.source:
                out.write(c(_DIM, f"    source: {one_line(f.source)}") + "\n")

    def finish(self, profiles: int) -> None:
        out, counts = self.out, self.severities
        if self.err is None:  # no separate error stream: the load errors go with the report
            for e in self.errors:
                out.write(f"{self._c(_BOLD, 'error')}: {one_line(str(e))}\n")
        if self.statistics and self.rules:
            for rule, n in sorted(self.rules.items(), key=lambda kv: (-kv[1], kv[0])):
                out.write(f"{n:6d}  {rule}\n")
        parts = [f"{counts[s]} {s}{'s' if counts[s] != 1 else ''}" for s in ("error", "warning", "info") if counts[s]]
        if self.unreadable:
            parts.insert(0, f"{self.unreadable} unreadable profile{'s' if self.unreadable != 1 else ''}")
        summary = ", ".join(parts) if parts else "no problems"
        out.write(f"{summary} in {profiles} profile{'s' if profiles != 1 else ''}\n")
