"""Parse the probe's console output: ``@@ORACLE {json}`` lines amid kernel noise."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from cpumodel.oracle.errors import ProbeCrash

MARKER = "@@ORACLE "

# Linux asm-generic errno numbers (include/uapi/asm-generic/errno-base.h, errno.h;
# arm64 uses these), plus ENOTSUPP (include/linux/errno.h, kernel-internal but leaks).
ERRNO_NAMES: dict[int, str] = {
    1: "EPERM",
    2: "ENOENT",
    3: "ESRCH",
    4: "EINTR",
    5: "EIO",
    6: "ENXIO",
    7: "E2BIG",
    8: "ENOEXEC",
    9: "EBADF",
    11: "EAGAIN",
    12: "ENOMEM",
    13: "EACCES",
    14: "EFAULT",
    16: "EBUSY",
    17: "EEXIST",
    19: "ENODEV",
    22: "EINVAL",
    25: "ENOTTY",
    28: "ENOSPC",
    34: "ERANGE",
    38: "ENOSYS",
    95: "EOPNOTSUPP",
    524: "ENOTSUPP",
}


def errno_name(n: int) -> int | str:
    """0 stays 0; a positive errno becomes its name ("EINVAL"); -1 (not attempted) stays -1."""
    if n <= 0:
        return n
    return ERRNO_NAMES.get(n, f"ERRNO{n}")


@dataclass
class ProbeOutput:
    """The probe's messages by type, plus what could not be parsed."""

    messages: list[dict[str, object]] = field(default_factory=list)
    garbage: list[str] = field(default_factory=list)  # marker lines whose JSON was broken
    noise_lines: int = 0  # console lines without the marker (kernel log etc.)

    def of_type(self, t: str) -> list[dict[str, object]]:
        return [m for m in self.messages if m.get("t") == t]

    def first(self, t: str) -> dict[str, object] | None:
        found = self.of_type(t)
        return found[0] if found else None


def parse_console(text: str) -> ProbeOutput:
    """Collect every marker line; the marker may be preceded by noise on the same line."""
    out = ProbeOutput()
    for raw in text.replace("\r", "\n").split("\n"):
        pos = raw.find(MARKER)
        if pos < 0:
            if raw.strip():
                out.noise_lines += 1
            continue
        payload = raw[pos + len(MARKER) :].strip()
        try:
            msg = json.loads(payload)
        except json.JSONDecodeError:
            out.garbage.append(raw)
            continue
        if not isinstance(msg, dict) or "t" not in msg:
            out.garbage.append(raw)
            continue
        out.messages.append(msg)
    return out


def check_complete(out: ProbeOutput, console: str) -> dict[str, object]:
    """Raise ProbeCrash unless the probe said "done" and no line was lost; return "done"."""
    tail = "\n".join(console.replace("\r", "").splitlines()[-25:])
    fatal = out.first("fatal")
    if fatal:
        raise ProbeCrash(
            f"the probe gave up: {fatal.get('what')} (errno {errno_name(int(str(fatal.get('errno', 0))))})",
            console_tail=tail,
        )
    if out.first("hello") is None:
        raise ProbeCrash(
            "the probe never started (no output from /init): kernel panic or boot failure", console_tail=tail
        )
    done = out.first("done")
    if done is None:
        raise ProbeCrash("the guest stopped before the probe finished (probe crash or kernel panic)", console_tail=tail)
    seen = {m.get("n") for m in out.messages}
    lines = done.get("lines")
    if not isinstance(lines, int) or len(seen) != lines or seen != set(range(lines)):
        missing = sorted(set(range(lines if isinstance(lines, int) else 0)) - seen)
        raise ProbeCrash(
            f"probe output is incomplete: {len(out.garbage)} garbled line(s), missing line numbers"
            f" {missing[:10]}{'...' if len(missing) > 10 else ''}",
            console_tail="\n".join(out.garbage[:5]) or tail,
        )
    return done
