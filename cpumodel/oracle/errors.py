"""Errors of the real-KVM oracle: one readable message each."""

from __future__ import annotations

from cpumodel.errors import CpumodelError


class OracleError(CpumodelError):
    """Anything that stops an oracle recording; ``str()`` is a complete sentence."""

    def __init__(self, message: str, hint: str | None = None, console_tail: str | None = None):
        super().__init__(message, hint=hint)
        self.console_tail = console_tail

    def __str__(self) -> str:
        text = super().__str__()
        if self.console_tail:
            text += "\n--- last console lines ---\n" + self.console_tail
        return text


class ToolMissing(OracleError):
    """A host tool is not installed; the message names the Debian package."""

    def __init__(self, tool: str, package: str, extra: str = ""):
        super().__init__(
            f"{tool} is not installed{extra}",
            hint=f"install the Debian package {package}: apt-get install -y {package}"
            " (or run: python -m tools.oracle setup)",
        )
        self.tool = tool
        self.package = package


class KernelNotFound(OracleError):
    """No Debian arm64 kernel package matches the requested version."""


class BootTimeout(OracleError):
    """QEMU did not finish (probe powered off) within the timeout."""


class ProbeCrash(OracleError):
    """The guest ended without the probe's final line (crash, panic, lost output)."""
