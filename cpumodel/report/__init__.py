"""Renderers of findings. Each takes the same list; nothing prints from inside a rule."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import TextIO

from cpumodel.findings import Finding

FORMATS = ("text", "json", "github", "sarif", "junit")


def use_color(stream: TextIO) -> bool:
    """Colour only on a terminal, and never with NO_COLOR set (https://no-color.org)."""
    if os.environ.get("NO_COLOR"):
        return False
    if os.environ.get("FORCE_COLOR"):
        return True
    return hasattr(stream, "isatty") and stream.isatty()


def render(findings: Sequence[Finding], fmt: str, *, errors: Sequence[str] = (), profiles: int = 0,
           stream: TextIO | None = None, statistics: bool = False, quiet: bool = False) -> None:
    stream = stream or sys.stdout
    if fmt == "text":
        from cpumodel.report.text import render_text

        render_text(findings, errors, profiles, stream, color=use_color(stream),
                    statistics=statistics, quiet=quiet)
    elif fmt == "json":
        from cpumodel.report.machine import render_json

        render_json(findings, errors, profiles, stream)
    elif fmt == "github":
        from cpumodel.report.machine import render_github

        render_github(findings, errors, stream)
    elif fmt == "sarif":
        from cpumodel.report.machine import render_sarif

        render_sarif(findings, errors, stream)
    elif fmt == "junit":
        from cpumodel.report.machine import render_junit

        render_junit(findings, errors, profiles, stream)
    else:  # pragma: no cover - click restricts the choice
        raise ValueError(fmt)
