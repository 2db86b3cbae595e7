"""The project's own error type: every bad input ends here, never in a traceback."""

from __future__ import annotations

from cpumodel.records import record


@record(frozen=True, slots=True)
class Location:
    """Where a value came from: a file, 1-based line and column (0 = unknown)."""

    file: str
    line: int = 0
    column: int = 0

    def __str__(self) -> str:
        if self.line:
            return f"{self.file}:{self.line}:{self.column}" if self.column else f"{self.file}:{self.line}"
        return self.file


class CpumodelError(Exception):
    """A user-facing error: one readable message, optionally with a location.

    The CLI prints ``file:line: message`` and exits with code 2.
    """

    def __init__(self, message: str, location: Location | None = None, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.location = location
        self.hint = hint

    def __reduce__(self) -> tuple[type[CpumodelError], tuple[str, Location | None, str | None]]:
        # picklable with its location and hint (check --jobs sends errors between processes)
        return (type(self), (self.message, self.location, self.hint))

    def __str__(self) -> str:
        text = f"{self.location}: {self.message}" if self.location else self.message
        if self.hint:
            text += f" ({self.hint})"
        return text


def suggest(word: str, choices: list[str] | tuple[str, ...] | set[str], n: int = 1) -> str | None:
    """A 'did you mean' hint for an unknown name, case-insensitively."""
    import difflib

    lowered = {c.lower(): c for c in choices}
    hits = difflib.get_close_matches(word.lower(), list(lowered), n=n, cutoff=0.6)
    return f"did you mean {lowered[hits[0]]}?" if hits else None
