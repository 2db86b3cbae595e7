"""The kernel lines cpumodel models, and where their source trees are (``data/kvm/overlays/lines.json``).

Importable by every generator that works per kernel line (``python -m tools.gen_kvm``, and any
other table extracted from a line's source)::

    from cpumodel.kvm.lines import lines, source_tree
    for ln in lines():
        if ln.modelled:
            tree = source_tree(ln, Path("/work/src"))    # /work/src/linux-7.3.4, or None
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from cpumodel.records import record

LINES_FILE = Path(__file__).resolve().parent.parent / "data" / "kvm" / "overlays" / "lines.json"
DEFAULT_SRC = Path(os.environ.get("CPUMODEL_LINUX_SRC", "/work/src"))


@record(frozen=True)
class Line:
    line: str          # "7.3"
    release: str       # the release whose tree the rules come from ("7.3.4")
    modelled: bool
    why: str = ""      # for an unmodelled line: why not
    note: str = ""     # a known limit of a modelled line's rules

    @property
    def key(self) -> tuple[int, ...]:
        return version_key(self.line)


def version_key(v: str) -> tuple[int, ...]:
    """(major, minor[, patch]) of ``7.2``, ``7.2.13``, ``7.2.13+deb13-arm64``, ``6.1.0-37-arm64``."""
    m = re.match(r"(\d+)\.(\d+)(?:\.(\d+))?", v.strip())
    if not m:
        raise ValueError(f"not a kernel version: {v!r}")
    return tuple(int(x) for x in m.groups() if x is not None)


def lines() -> list[Line]:
    data = json.loads(LINES_FILE.read_text())
    out = [Line(e["line"], e["release"], e.get("modelled", True), e.get("why", ""), e.get("note", ""))
           for e in data["lines"]]
    return sorted(out, key=lambda ln: ln.key)


def source_tree(ln: Line, src: Path = DEFAULT_SRC) -> Path | None:
    """``<src>/linux-<release>`` when it holds a tree (has a Makefile), else None."""
    tree = src / f"linux-{ln.release}"
    return tree if (tree / "Makefile").exists() else None


def nearest(version: str, candidates: list[str]) -> str | None:
    """The newest of ``candidates`` (``X.Y`` lines) not newer than ``version``; else the oldest."""
    key = version_key(version)[:2]
    older = [c for c in candidates if version_key(c)[:2] <= key]
    if older:
        return max(older, key=version_key)
    return min(candidates, key=version_key) if candidates else None
