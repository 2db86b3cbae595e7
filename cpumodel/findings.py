"""Findings are values: every rule returns them, every output format renders the same list."""

from __future__ import annotations

from dataclasses import field as dc_field
from typing import Any

from cpumodel.errors import Location
from cpumodel.records import record

SEVERITIES = ("error", "warning", "info")


@record
class Finding:
    """One rule's finding on a profile: rule, severity, message and where it points."""

    rule: str
    severity: str
    message: str
    register: str | None = None
    field: str | None = None
    asked: int | None = None
    allowed: str | None = None
    why: str | None = None
    location: Location | None = None
    source: str = ""
    profile: str = ""
    # KVM findings
    errno: str | None = None
    kernel: str | None = None
    host_value: int | None = None
    policy: str | None = None
    extra: dict[str, Any] = dc_field(default_factory=dict)

    @property
    def target(self) -> str:
        if self.register and self.field:
            return f"{self.register}.{self.field}"
        return self.register or ""

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "rule": self.rule, "severity": self.severity, "message": self.message,
            "profile": self.profile,
            "file": self.location.file if self.location else None,
            "line": self.location.line if self.location else None,
            "column": self.location.column if self.location else None,
            "register": self.register, "field": self.field,
            "asked": self.asked, "allowed": self.allowed, "why": self.why, "source": self.source,
        }
        for k in ("errno", "kernel", "host_value", "policy"):
            v = getattr(self, k)
            if v is not None:
                d[k] = v
        if self.extra:
            d.update(self.extra)
        return d
