"""The constraints' notation: one renderer for the build-time text and the run-time explanations.

An expression is ``True``/``False``, a feature name, ``("a", atom)`` (a field comparison, drawn
by the caller's ``atom``), ``("!", x)``, ``("&&"|"||", x, ...)`` or ``(op, x, y)`` (``-->``,
``<->``, ...), as tuples at run time and lists in ``tools/gen_features.py``. Operands that are
themselves operations are parenthesised; atoms, names and negations are not.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Expr = Any


def render(e: Expr, atom: Callable[[int], str]) -> str:
    """``e`` in Arm's notation (``TRUE``, ``FEAT_X``, ``!x``, ``a && (b || c)``, ``a --> b``)."""
    if isinstance(e, bool):
        return "TRUE" if e else "FALSE"
    if isinstance(e, str):
        return e
    op = e[0]
    if op == "a":
        return atom(e[1])
    if op == "!":
        return "!" + operand(e[1], atom)
    if op in ("&&", "||"):
        return f" {op} ".join(operand(x, atom) for x in e[1:])
    return f"{operand(e[1], atom)} {op} {operand(e[2], atom)}"


def operand(e: Expr, atom: Callable[[int], str]) -> str:
    """``e`` as an operand: in parentheses unless an atom, a name, a constant or a negation."""
    s = render(e, atom)
    return s if isinstance(e, (bool, str)) or e[0] in ("a", "!") else f"({s})"
