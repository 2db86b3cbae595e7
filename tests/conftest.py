from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PROFILES = REPO / "profiles"
SHARED = REPO.parent / "shared"
REFERENCE = SHARED / "reference"


@pytest.fixture
def write(tmp_path: Path) -> Callable[..., Path]:
    """write('name.yaml', text) -> path of a profile in a temporary directory."""

    def _write(name: str, text: str | bytes) -> Path:
        p = tmp_path / name
        if isinstance(text, bytes):
            p.write_bytes(text)
        else:
            p.write_text(textwrap.dedent(text))
        return p

    return _write


def shipped_profiles() -> list[Path]:
    return sorted(PROFILES.glob("*.yaml"))
