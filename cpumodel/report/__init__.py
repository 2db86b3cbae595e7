"""Renderers of findings. Every format takes the same stream of findings through one interface
(``Renderer``: ``error`` for an unreadable profile, ``add`` for a profile's findings, ``finish``);
nothing prints from inside a rule or the engine.

Text is streamed (memory stays flat however many profiles are checked); the machine formats
collect and write one document at ``finish``. Every format also says each unreadable profile on
the error stream in the one error form of the CLI (``cpumodel: error: file:line: message``).
"""

from __future__ import annotations

import os
import sys
from collections import Counter
from collections.abc import Sequence
from typing import TextIO

from cpumodel.errors import CpumodelError
from cpumodel.escape import one_line
from cpumodel.findings import Finding

FORMATS = ("text", "json", "github", "sarif", "junit")


def use_color(stream: TextIO) -> bool:
    """Colour only on a terminal, and never with NO_COLOR set (https://no-color.org)."""
    if os.environ.get("NO_COLOR"):
        return False
    if os.environ.get("FORCE_COLOR"):
        return True
    return hasattr(stream, "isatty") and stream.isatty()


def error_line(e: CpumodelError | str) -> str:
    """The one form of an error message on stderr, for every command."""
    return f"cpumodel: error: {one_line(str(e))}"


class Renderer:
    """Receives a run's findings profile by profile; counts severities as the exit code does."""

    def __init__(self, out: TextIO, *, err: TextIO | None = None, statistics: bool = False, quiet: bool = False,
                 strict: bool = False) -> None:
        self.out, self.err = out, err
        self.statistics, self.quiet, self.strict = statistics, quiet, strict
        self.severities: Counter[str] = Counter()
        self.rules: Counter[str] = Counter()
        self.errors: list[CpumodelError] = []

    @property
    def unreadable(self) -> int:
        return len(self.errors)

    def error(self, e: CpumodelError | str) -> None:
        """A profile that could not be read (said on the error stream, and kept for the report)."""
        if isinstance(e, str):
            e = CpumodelError(e)
        self.errors.append(e)
        if self.err is not None:
            self.err.write(error_line(e) + "\n")

    def add(self, findings: Sequence[Finding]) -> None:
        for f in findings:
            self.severities[f.severity] += 1
            self.rules[f.rule] += 1

    def finish(self, profiles: int) -> None:  # pragma: no cover - every format overrides it
        raise NotImplementedError


class _Collecting(Renderer):
    """A machine format: keeps the findings and writes one document at the end."""

    def __init__(self, fmt: str, out: TextIO, **kw: object) -> None:
        super().__init__(out, **kw)  # type: ignore[arg-type]
        self.fmt = fmt
        self.findings: list[Finding] = []

    def add(self, findings: Sequence[Finding]) -> None:
        super().add(findings)
        self.findings += findings

    def finish(self, profiles: int) -> None:
        from cpumodel.report import machine

        machine.RENDERERS[self.fmt](self.findings, self.errors, profiles, self.out, strict=self.strict)


def renderer(fmt: str, out: TextIO, *, err: TextIO | None = None, statistics: bool = False, quiet: bool = False,
             strict: bool = False) -> Renderer:
    """The renderer of ``fmt`` writing to ``out`` (load errors also to ``err``)."""
    if fmt == "text":
        from cpumodel.report.text import TextRenderer

        return TextRenderer(out, err=err, color=use_color(out), statistics=statistics, quiet=quiet, strict=strict)
    if fmt not in FORMATS:  # pragma: no cover - click restricts the choice
        raise ValueError(fmt)
    return _Collecting(fmt, out, err=err, statistics=statistics, quiet=quiet, strict=strict)


def render(findings: Sequence[Finding], fmt: str, *, errors: Sequence[CpumodelError | str] = (), profiles: int = 0,
           stream: TextIO | None = None, statistics: bool = False, quiet: bool = False) -> None:
    """Render a finished list of findings (``emit`` and ``baseline`` show their refusals this way)."""
    r = renderer(fmt, stream or sys.stdout, statistics=statistics, quiet=quiet)
    for e in errors:
        r.error(e)
    r.add(findings)
    r.finish(profiles)
