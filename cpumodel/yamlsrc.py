"""Safe YAML reading with source positions.

Profiles are composed into PyYAML *nodes* (never constructed into Python objects by
PyYAML, so no tag can build anything): by libyaml's C composer when a text's indicators bound
its nesting and size and the tree it builds holds nothing a profile may not (``_compose_fast``),
else from the C parser's events by this module's composer, which reports what is wrong, at
its line. Both build the same tree. Scalars are converted by this module under strict,
documented rules (see ``parse_int``).

Limits (each refused with one message naming the file and, where known, the line):
``MAX_BYTES`` per file, ``MAX_DEPTH`` nesting levels, ``MAX_NODES`` nodes, ``MAX_INT_CHARS``
per number.
"""

from __future__ import annotations

import os
import re
import stat
from typing import ClassVar

import yaml
from yaml.events import (
    AliasEvent,
    DocumentEndEvent,
    MappingEndEvent,
    MappingStartEvent,
    ScalarEvent,
    SequenceEndEvent,
    SequenceStartEvent,
    StreamEndEvent,
)
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from yaml.reader import ReaderError

from cpumodel.errors import CpumodelError, Location

try:  # libyaml's C parser: an order of magnitude faster than the pure-Python one
    from yaml import CSafeLoader as _Loader
except ImportError:  # pragma: no cover - depends on how PyYAML was built
    from yaml import SafeLoader as _Loader  # type: ignore[assignment]

#: Largest profile accepted, in bytes. Real profiles are a few KiB.
MAX_BYTES = 1 << 20
#: Deepest nesting accepted in a profile (a real one nests 3 deep).
MAX_DEPTH = 32
#: Most YAML nodes (scalars, lists, mappings and alias uses) accepted in a profile. A profile
#: setting every field of every register by name has about 1,000; PyYAML needs seconds for the
#: ~500,000 that fit in MAX_BYTES, so the limit also bounds the time spent on a hostile file.
MAX_NODES = 20_000
#: Longest integer spelling converted (a 64-bit value needs at most 129, in binary with '_').
#: Longer ones are refused unconverted: turning a huge decimal into an int takes quadratic time.
MAX_INT_CHARS = 200

INT_TAG = "tag:yaml.org,2002:int"
FLOAT_TAG = "tag:yaml.org,2002:float"
BOOL_TAG = "tag:yaml.org,2002:bool"
NULL_TAG = "tag:yaml.org,2002:null"
STR_TAG = "tag:yaml.org,2002:str"
MERGE_TAG = "tag:yaml.org,2002:merge"
MAP_TAG = "tag:yaml.org,2002:map"
SEQ_TAG = "tag:yaml.org,2002:seq"
STD_TAGS = {INT_TAG, FLOAT_TAG, BOOL_TAG, NULL_TAG, STR_TAG, MERGE_TAG, MAP_TAG, SEQ_TAG}


def loc(path: str, node: Node) -> Location:
    m = node.start_mark
    return Location(path, m.line + 1, m.column + 1)


def read_text(path: str) -> str:
    """Read a profile file: regular files only, size-limited, UTF-8 (a BOM is allowed).

    The file is opened non-blocking and checked with ``fstat`` on the open descriptor, so a
    FIFO or device swapped in after a check can neither block nor stream forever.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0))
    except FileNotFoundError:
        raise CpumodelError("no such file", Location(path)) from None
    except IsADirectoryError:
        raise CpumodelError("is a directory, not a profile", Location(path)) from None
    except OSError as e:
        raise CpumodelError(f"cannot read: {e.strerror}", Location(path)) from None
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise CpumodelError("is a directory, not a profile", Location(path))
        if not stat.S_ISREG(st.st_mode):
            raise CpumodelError("is not a regular file (device, FIFO or socket?)", Location(path))
        if st.st_size > MAX_BYTES:
            raise CpumodelError(f"file is {st.st_size} bytes; profiles are limited to {MAX_BYTES} bytes",
                                Location(path))
        with os.fdopen(fd, "rb", closefd=False) as fh:
            data = fh.read(MAX_BYTES + 1)
    except OSError as e:
        raise CpumodelError(f"cannot read: {e.strerror}", Location(path)) from None
    finally:
        os.close(fd)
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
    """Compose one YAML document into nodes; None for an empty document.

    The nodes are built here from libyaml's event stream (not by PyYAML's composer, which
    recurses once per nesting level and, in its C version, crashes the interpreter on
    ~100,000 nested brackets). One iterative pass refuses, at the offending line:
    nesting deeper than ``MAX_DEPTH``, non-standard tags, merge keys, duplicate keys,
    undefined, duplicate or self-enclosing anchors and more than one document. Aliases
    share the anchored node, so an alias bomb ("billion laughs") costs no more than its text.
    """
    if "\t" in text:
        # YAML forbids tabs in indentation; say so precisely rather than via the parser's message.
        for n, line in enumerate(text.splitlines(), 1):
            stripped = line.lstrip(" ")
            if stripped.startswith("\t"):
                raise CpumodelError("tab character used for indentation (YAML allows spaces only)",
                                    Location(path, n, len(line) - len(stripped) + 1))
    if _C_COMPOSER:
        fast = _compose_fast(text)
        if fast is not _DECLINED:
            return fast
    loader = _Loader(text)
    try:
        return _compose_events(loader, path)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        msg = " ".join(s for s in (e.context, e.problem) if s) or "invalid YAML"
        where = Location(path, mark.line + 1, mark.column + 1) if mark else Location(path)
        if "maximum nesting depth" in msg:  # libyaml >= 0.2.5's own limit, met before ours
            raise CpumodelError(f"nesting deeper than {MAX_DEPTH} levels", where) from None
        raise CpumodelError(f"YAML syntax error: {msg}", where) from None
    except ReaderError as e:
        raise _reader_error(e, text, path) from None
    except yaml.YAMLError as e:
        raise CpumodelError(f"YAML error: {' '.join(str(e).split())}", Location(path)) from None
    finally:
        loader.dispose()


#: Whether libyaml's composer (PyYAML's C extension) is there for ``_compose_fast``.
_C_COMPOSER = _Loader.__module__ == "yaml.cyaml"
#: ``_compose_fast``'s answer when it leaves a text to ``_compose_events``.
_DECLINED: object = object()
#: Most indicators (``[ { - : ? ,``) a text may hold for ``_compose_fast``. Every nesting level
#: needs one, and each adds at most two nodes: this bounds the recursion of libyaml's composer far
#: below what it survives, and its nodes (at most 2 * 4,000 + 1) below ``MAX_NODES``, so a hostile
#: file is stopped by the event composer's budget before it costs time.
_FAST_MAX_INDICATORS = 4000


class _FastLoader(_Loader):  # type: ignore[misc,valid-type]
    """libyaml's composer with PyYAML's tag resolution (``BaseResolver.resolve``, which libyaml
    calls once per node) answered from a memo for plain scalars: a profile repeats its values.
    ``odd_tag`` says an implicit tag no profile may hold was resolved (a timestamp, ``=``)."""

    _plain: ClassVar[dict[str, str]] = {}  # plain scalar -> its (standard) tag, for short ones (bounded)

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.odd_tag = False

    def resolve(self, kind: type, value: str, implicit: tuple[bool, bool]) -> str:
        if kind is ScalarNode:
            if not implicit[0]:
                return STR_TAG  # BaseResolver's DEFAULT_SCALAR_TAG: there are no path resolvers
            tag = self._plain.get(value)
            if tag is None:
                tag = super().resolve(kind, value, implicit)
                if tag not in STD_TAGS:
                    self.odd_tag = True
                elif len(value) <= 64:
                    if len(self._plain) >= 4096:
                        self._plain.clear()
                    self._plain[value] = tag
            return tag
        return super().resolve(kind, value, implicit)  # the standard map or seq tag

    def descend_resolver(self, current_node: object, current_index: object) -> None:
        pass  # no path resolvers (as BaseResolver, without its check per node)

    def ascend_resolver(self) -> None:
        pass


# Every node but the root is preceded by an indicator of its own, and each indicator brings at most
# two (a key and its value): a text _compose_fast takes cannot exceed the node budget.
assert 2 * _FAST_MAX_INDICATORS + 1 < MAX_NODES


def _compose_fast(text: str) -> Node | object | None:
    """The document composed by libyaml's C composer, checked as ``_Composer`` checks it, or
    ``_DECLINED`` (then ``_compose_events`` composes it and reports what is wrong, where).

    Taken only for a text whose nesting and node count are bounded by its few indicators; the
    tree is then the one ``_compose_events`` builds (same nodes, tags, styles and marks;
    tests/test_loader.py compares them). Any error, a non-standard tag (implicit, or explicit:
    only a text with ``!`` can hold one), a merge key, a duplicate key, nesting deeper than
    ``MAX_DEPTH`` or a collection reached twice (an alias of a mapping or list: possibly
    enclosing itself) declines: the event composer gives the one message for it, or shares the
    collection as it does.
    """
    if (text.count(":") + text.count("-") + text.count("[") + text.count("{") + text.count("?")
            + text.count(",")) > _FAST_MAX_INDICATORS:
        return _DECLINED
    loader = _FastLoader(text)
    try:
        root = loader.get_single_node()
    except Exception:
        return _DECLINED
    finally:
        loader.dispose()
    if loader.odd_tag or (root is not None and not _acceptable(root, "!" in text)):
        return _DECLINED
    return root


def _acceptable(root: Node, tagged: bool) -> bool:
    """Whether a composed tree holds only what ``_Composer`` accepts (see ``_compose_fast``);
    ``tagged``: the text may hold explicit tags, so every node's tag is checked."""
    todo: list[tuple[Node, int]] = [(root, 1)]
    pop, push, std, scalar, mapping = todo.pop, todo.append, STD_TAGS, ScalarNode, MappingNode
    collections: set[int] = set()
    while todo:
        node, depth = pop()
        if tagged and node.tag not in std:
            return False
        cls = type(node)
        if cls is scalar:
            continue
        if depth >= MAX_DEPTH or id(node) in collections:
            return False
        collections.add(id(node))
        if cls is mapping:
            seen = set()
            for k, v in node.value:
                if k.tag == MERGE_TAG:
                    return False
                if type(k) is scalar:
                    if k.value in seen or (tagged and k.tag not in std):
                        return False
                    seen.add(k.value)
                else:
                    push((k, depth + 1))
                if tagged or type(v) is not scalar:
                    push((v, depth + 1))
        else:
            for v in node.value:
                if tagged or type(v) is not scalar:
                    push((v, depth + 1))
    return True


def _reader_error(e: ReaderError, text: str, path: str) -> CpumodelError:
    """libyaml refuses some characters (controls, e.g. NUL); report them at their line and column."""
    data = text.encode("utf-8")
    pos = max(0, min(e.position, len(data)))  # libyaml counts bytes of the UTF-8 input
    line = data.count(b"\n", 0, pos) + 1
    column = len(data[data.rfind(b"\n", 0, pos) + 1:pos].decode("utf-8", "replace")) + 1
    char = e.character if isinstance(e.character, int) else None
    what = f"character U+{char:04X}" if char is not None else "character"
    return CpumodelError(f"{what} is not allowed in YAML ({e.reason})", Location(path, line, column))


def _compose_events(loader: _Loader, path: str) -> Node | None:
    """The stream's one document as nodes (None when empty), by ``_Composer``."""
    get = loader.get_event
    get()  # StreamStartEvent
    ev = get()
    if type(ev) is StreamEndEvent:
        return None
    composer = _Composer(loader, path)
    root: Node | None = None
    while True:  # the document's events, up to its DocumentEndEvent
        ev = get()
        cls = type(ev)
        node: Node
        if cls is ScalarEvent:  # the common case first
            node = composer.scalar(ev)
        elif cls is MappingEndEvent or cls is SequenceEndEvent:
            node = composer.close(ev)
        elif cls is MappingStartEvent or cls is SequenceStartEvent:
            composer.open(ev, cls is MappingStartEvent)
            continue
        elif cls is AliasEvent:
            node = composer.alias(ev)
        elif cls is DocumentEndEvent:
            break
        else:  # pragma: no cover - libyaml emits no other event inside a document
            raise CpumodelError(f"unexpected YAML event {cls.__name__}", _mark(path, ev.start_mark))
        if composer.stack:
            composer.attach(node)
        else:
            root = node
    ev = get()
    if type(ev) is not StreamEndEvent:
        raise CpumodelError("more than one YAML document in the file (a profile is a single document)",
                            _mark(path, ev.start_mark))
    return root


class _Composer:
    """Builds one document's nodes from its events, refusing what a profile may not hold.

    ``stack`` holds the open collections as [node, pending mapping key or None, keys seen
    (mappings only)]; ``budget`` counts down the nodes still allowed (``MAX_NODES``).
    """

    def __init__(self, loader: _Loader, path: str) -> None:
        self.path = path
        self.resolvers = loader.yaml_implicit_resolvers  # PyYAML's YAML 1.1 rules, inlined in scalar()
        self.wildcard = self.resolvers.get(None, [])
        self.anchors: dict[str, Node] = {}
        self.stack: list[list] = []  # type: ignore[type-arg]
        self.budget = MAX_NODES

    def _count(self, ev: yaml.Event) -> None:
        self.budget -= 1
        if self.budget < 0:
            raise _too_many(self.path, ev.start_mark)

    def scalar(self, ev: ScalarEvent) -> ScalarNode:
        """A scalar node, its tag resolved as PyYAML's Resolver.resolve would; standard tags only."""
        self._count(ev)
        tag = ev.tag
        value = ev.value
        if tag is None or tag == "!":
            tag = STR_TAG
            if ev.implicit[0]:  # plain scalar
                for rtag, regexp in self.resolvers.get(value[:1], []) + self.wildcard:
                    if regexp.match(value):
                        tag = rtag
                        break
        if tag not in STD_TAGS:  # explicit, or implicit ones such as timestamps
            raise CpumodelError(f"YAML tag {shown(tag)} is not allowed in a profile", _mark(self.path, ev.start_mark))
        node = ScalarNode(tag, value, ev.start_mark, ev.end_mark, style=ev.style)
        if ev.anchor is not None:
            _anchor(self.anchors, ev, node, self.path)
        return node

    def open(self, ev: MappingStartEvent | SequenceStartEvent, mapping: bool) -> None:
        """Open a mapping or sequence: it receives the nodes up to its end event."""
        self._count(ev)
        tag = ev.tag
        if tag is None or tag == "!":
            tag = MAP_TAG if mapping else SEQ_TAG
        elif tag not in STD_TAGS:
            raise CpumodelError(f"YAML tag {shown(tag)} is not allowed in a profile", _mark(self.path, ev.start_mark))
        node = (MappingNode if mapping else SequenceNode)(tag, [], ev.start_mark, ev.end_mark,
                                                           flow_style=ev.flow_style)
        if ev.anchor is not None:
            _anchor(self.anchors, ev, node, self.path)
        if len(self.stack) >= MAX_DEPTH:
            raise CpumodelError(f"nesting deeper than {MAX_DEPTH} levels", _mark(self.path, ev.start_mark))
        self.stack.append([node, None, {} if mapping else None])

    def close(self, ev: MappingEndEvent | SequenceEndEvent) -> Node:
        """The innermost open collection, now complete."""
        node: Node = self.stack.pop()[0]
        node.end_mark = ev.end_mark
        return node

    def alias(self, ev: AliasEvent) -> Node:
        """The anchored node an alias names (shared, not copied): defined before it, not enclosing it."""
        self._count(ev)
        target = self.anchors.get(ev.anchor)
        if target is None:
            raise CpumodelError(f"YAML alias *{shown(ev.anchor)} refers to no anchor defined before it",
                                _mark(self.path, ev.start_mark))
        if any(entry[0] is target for entry in self.stack):
            raise CpumodelError(f"YAML alias *{shown(ev.anchor)} refers to a node that contains it",
                                _mark(self.path, ev.start_mark))
        return target

    def attach(self, node: Node) -> None:
        """Put a complete node into the innermost open collection: an item, a key or a key's value."""
        top = self.stack[-1]
        seen = top[2]
        if seen is None:  # in a sequence
            top[0].value.append(node)
        elif top[1] is None:  # a mapping key
            if node.tag == MERGE_TAG:
                raise CpumodelError("YAML merge keys ('<<') are not supported in profiles", loc(self.path, node))
            if type(node) is ScalarNode:
                if node.value in seen:
                    raise CpumodelError(f"duplicate key {shown(node.value)} (first defined at line "
                                        f"{seen[node.value].start_mark.line + 1})", loc(self.path, node))
                seen[node.value] = node
            top[1] = node
        else:  # a mapping value
            top[0].value.append((top[1], node))
            top[1] = None


def _anchor(anchors: dict[str, Node], ev: yaml.Event, node: Node, path: str) -> None:
    if ev.anchor in anchors:
        first = anchors[ev.anchor].start_mark.line + 1
        raise CpumodelError(f"YAML anchor &{shown(ev.anchor)} defined twice (first at line {first})",
                            _mark(path, ev.start_mark))
    anchors[ev.anchor] = node


def _too_many(path: str, mark: yaml.Mark) -> CpumodelError:
    return CpumodelError(f"more than {MAX_NODES} YAML values (a profile has at most a few thousand)",
                         _mark(path, mark))


def _mark(path: str, mark: yaml.Mark) -> Location:
    return Location(path, mark.line + 1, mark.column + 1)


def shown(text: str, limit: int = 60) -> str:
    """``repr(text)`` for a message, shortened when long (a hostile file may hold 1 MB names)."""
    if len(text) <= limit:
        return repr(text)
    return f"{text[:limit]!r}... ({len(text)} characters)"


_INT_RE = re.compile(r"[+-]?(?:0x[0-9a-f](?:_?[0-9a-f])*|0b[01](?:_?[01])*|0o[0-7](?:_?[0-7])*"
                     r"|0|[1-9](?:_?[0-9])*)", re.I)


def parse_int(text: str) -> int | None:
    """The integer spellings cpumodel accepts, or None.

    Accepted: decimal (``42``), hex (``0x2a``), binary (``0b101010``), octal (``0o52``),
    the prefixes in either case (``0X2A``), an optional sign (``-1``, ``+7``), ``_`` between
    digits (``0x0000_1000``), and surrounding whitespace. Refused (None): floats (``1.0``,
    ``1e3``), YAML 1.1 sexagesimal (``1:30``), decimal with a leading zero (``0777``, which
    YAML 1.1 would read as octal), a bare prefix (``0x``), ``_`` first, last or doubled
    (``_1``, ``1_``, ``1__0``), digits outside the base (``0b2``, ``0o8``), non-ASCII digits,
    and spellings longer than ``MAX_INT_CHARS`` (see ``int_too_long``).
    """
    hit = _INTS.get(text)
    if hit is not None:
        return hit
    t = text.strip()
    if len(t) > MAX_INT_CHARS or not _INT_RE.fullmatch(t):
        return None
    value = int(t.replace("_", ""), 0)
    if len(_INTS) >= 8192:
        _INTS.clear()
    _INTS[text] = value
    return value


#: parse_int's answers for accepted spellings (profiles of one fleet repeat their values); bounded.
_INTS: dict[str, int] = {}


def int_too_long(text: str) -> bool:
    """True for an accepted integer spelling that ``parse_int`` refuses only for its length."""
    t = text.strip()
    return len(t) > MAX_INT_CHARS and _INT_RE.fullmatch(t) is not None


def describe(node: Node) -> str:
    if isinstance(node, MappingNode):
        return "a mapping"
    if isinstance(node, SequenceNode):
        return "a list"
    if node.tag == BOOL_TAG:
        return f"the boolean {shown(node.value)}"
    if node.tag == NULL_TAG:
        return "an empty value"
    if node.tag == FLOAT_TAG:
        return f"the float {shown(node.value)}"
    return shown(node.value)
