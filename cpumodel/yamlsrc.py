"""Safe YAML reading with source positions.

Profiles are composed into PyYAML *nodes* (never constructed into Python objects by
PyYAML, so no tag can build anything), with the C loader when available. Scalars are
converted by this module under strict, documented rules (see ``parse_int``).
"""

from __future__ import annotations

import os
import re
import stat

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from cpumodel.errors import CpumodelError, Location

try:  # libyaml's C parser: an order of magnitude faster than the pure-Python one
    from yaml import CSafeLoader as _Loader
except ImportError:  # pragma: no cover - depends on how PyYAML was built
    from yaml import SafeLoader as _Loader  # type: ignore[assignment]

#: Largest profile accepted, in bytes. Real profiles are a few KiB.
MAX_BYTES = 1 << 20
#: Deepest nesting accepted in a profile (a real one nests 3 deep).
MAX_DEPTH = 32

INT_TAG = "tag:yaml.org,2002:int"
FLOAT_TAG = "tag:yaml.org,2002:float"
BOOL_TAG = "tag:yaml.org,2002:bool"
NULL_TAG = "tag:yaml.org,2002:null"
STR_TAG = "tag:yaml.org,2002:str"
STD_TAGS = {INT_TAG, FLOAT_TAG, BOOL_TAG, NULL_TAG, STR_TAG,
            "tag:yaml.org,2002:map", "tag:yaml.org,2002:seq"}


def loc(path: str, node: Node) -> Location:
    m = node.start_mark
    return Location(path, m.line + 1, m.column + 1)


def read_text(path: str) -> str:
    """Read a profile file: regular files only, size-limited, UTF-8 (a BOM is allowed)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise CpumodelError("no such file", Location(path)) from None
    except OSError as e:
        raise CpumodelError(f"cannot read: {e.strerror}", Location(path)) from None
    if stat.S_ISDIR(st.st_mode):
        raise CpumodelError("is a directory, not a profile", Location(path))
    if not stat.S_ISREG(st.st_mode):
        raise CpumodelError("is not a regular file (device, FIFO or socket?)", Location(path))
    if st.st_size > MAX_BYTES:
        raise CpumodelError(f"file is {st.st_size} bytes; profiles are limited to {MAX_BYTES} bytes",
                            Location(path))
    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_BYTES + 1)
    except OSError as e:
        raise CpumodelError(f"cannot read: {e.strerror}", Location(path)) from None
    if len(data) > MAX_BYTES:
        raise CpumodelError(f"file is larger than the {MAX_BYTES}-byte limit for profiles", Location(path))
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise CpumodelError(f"not valid UTF-8 (byte {data[e.start]:#04x} at offset {e.start})",
                            Location(path, line)) from None
    return text.removeprefix("\ufeff")


def compose(text: str, path: str) -> Node | None:
    """Compose one YAML document into nodes; None for an empty document."""
    if "\t" in text:
        # YAML forbids tabs in indentation; say so precisely rather than via the parser's message.
        for n, line in enumerate(text.splitlines(), 1):
            stripped = line.lstrip(" ")
            if stripped.startswith("\t"):
                raise CpumodelError("tab character used for indentation (YAML allows spaces only)",
                                    Location(path, n, len(line) - len(stripped) + 1))
    try:
        loader = _Loader(text)
        try:
            node = loader.get_single_node()
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        msg = " ".join(s for s in (e.context, e.problem) if s) or "invalid YAML"
        if "expected a single document" in msg or "but found another document" in msg:
            msg = "more than one YAML document in the file (a profile is a single document)"
        where = Location(path, mark.line + 1, mark.column + 1) if mark else Location(path)
        raise CpumodelError(f"YAML syntax error: {msg}", where) from None
    except yaml.YAMLError as e:
        raise CpumodelError(f"YAML error: {e}", Location(path)) from None
    except RecursionError:
        raise CpumodelError("YAML nesting is too deep", Location(path)) from None
    if node is not None:
        _check_tree(node, path)
    return node


def _check_tree(root: Node, path: str) -> None:
    """Refuse non-standard tags, merge keys, duplicate keys and excessive depth.

    Iterative, and each node object is visited once, so alias graphs ("billion laughs")
    cost no more than their text.
    """
    seen: set[int] = set()
    stack: list[tuple[Node, int]] = [(root, 1)]
    while stack:
        node, depth = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if depth > MAX_DEPTH:
            raise CpumodelError(f"nesting deeper than {MAX_DEPTH} levels", loc(path, node))
        if node.tag not in STD_TAGS:
            raise CpumodelError(f"YAML tag {node.tag!r} is not allowed in a profile", loc(path, node))
        if isinstance(node, MappingNode):
            first: dict[str, Node] = {}
            for k, v in node.value:
                if k.tag == "tag:yaml.org,2002:merge":
                    raise CpumodelError("YAML merge keys ('<<') are not supported in profiles",
                                        loc(path, k))
                if isinstance(k, ScalarNode):
                    if k.value in first:
                        prev = first[k.value].start_mark.line + 1
                        raise CpumodelError(f"duplicate key {k.value!r} (first defined at line {prev})",
                                            loc(path, k))
                    first[k.value] = k
                stack.append((k, depth + 1))
                stack.append((v, depth + 1))
        elif isinstance(node, SequenceNode):
            stack.extend((v, depth + 1) for v in node.value)


_INT_RE = re.compile(r"[+-]?(?:0x[0-9a-f](?:_?[0-9a-f])*|0b[01](?:_?[01])*|0o[0-7](?:_?[0-7])*"
                     r"|0|[1-9](?:_?[0-9])*)", re.I)


def parse_int(text: str) -> int | None:
    """The integer spellings cpumodel accepts, or None.

    Accepted: decimal (``42``), hex (``0x2a``), binary (``0b101010``), octal (``0o52``),
    an optional sign, and ``_`` between digits (``0x0000_1000``). Refused (None): floats,
    YAML 1.1 sexagesimal (``1:30``), and decimal with a leading zero (``0777``, which YAML 1.1
    would read as octal).
    """
    t = text.strip()
    if not _INT_RE.fullmatch(t):
        return None
    return int(t.replace("_", ""), 0)


def describe(node: Node) -> str:
    if isinstance(node, MappingNode):
        return "a mapping"
    if isinstance(node, SequenceNode):
        return "a list"
    if node.tag == BOOL_TAG:
        return f"the boolean {node.value!r}"
    if node.tag == NULL_TAG:
        return "an empty value"
    if node.tag == FLOAT_TAG:
        return f"the float {node.value!r}"
    return repr(node.value)
