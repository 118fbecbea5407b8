"""Walk the construct spec into plain `Node` trees that generators can read.

Theory of operation
-------------------
`protocol/spec.py` builds every header and body from a small vocabulary of
construct objects. This module is the one place that knows how those objects
look inside (construct's macros such as `PascalString` and `PrefixedArray` are
nested `StringEncoded`/`Prefixed`/`FocusedSeq`/`Array` objects), and turns
each of them into a `Node`: a name, a `Kind`, the `struct` format of its fixed
part, its size when fixed, its enum class, its doc string and its children.
Generators (msggen, fastgen, docgen and the Wireshark luagen) walk Nodes and
never touch construct internals, so a spec construct the walker does not know
fails loudly here instead of producing silently wrong code.

Dispatch is always on `isinstance`: construct's `Renamed` and `this`
expressions answer any attribute, so `hasattr` would lie.
"""
from __future__ import annotations

import enum
import functools
import struct
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from pathlib import Path

import construct as c

from protocol import enums as _enums
from protocol import spec
from protocol.errors import ErrorCode
from protocol.spec import MessageType


class Kind(enum.Enum):
    UINT = "uint"  # unsigned big-endian integer
    SINT = "sint"  # signed big-endian integer
    FLOAT = "float"  # IEEE 754 big-endian
    BOOL = "bool"  # one byte, 0 or 1
    ENUM = "enum"  # integer restricted to an IntEnum's values
    FLAGS = "flags"  # integer whose bits are an IntEnum's values
    CONST = "const"  # fixed bytes that must match
    BYTES = "bytes"  # fixed-length raw bytes
    STRING = "string"  # length-prefixed UTF-8
    BLOB = "blob"  # length-prefixed raw bytes
    ARRAY = "array"  # count-prefixed sequence of `element`
    STRUCT = "struct"  # sequence of `fields`


# Kinds whose whole encoding is one fixed-size `struct` item.
FIXED_KINDS = frozenset(
    {Kind.UINT, Kind.SINT, Kind.FLOAT, Kind.BOOL, Kind.ENUM, Kind.FLAGS, Kind.CONST, Kind.BYTES}
)
# Kinds made of a fixed-size prefix (`fmt`) and a variable part.
PREFIXED_KINDS = frozenset({Kind.STRING, Kind.BLOB, Kind.ARRAY})


@dataclass(frozen=True)
class Node:
    """One field (or a whole struct) of the wire format.

    `fmt` is a `struct` format item without byte-order mark: the value itself
    for fixed kinds ('B', 'q', 'f', '32s'), the length or count prefix for
    STRING/BLOB/ARRAY, empty for STRUCT. `size` is the wire size in bytes when
    it does not depend on the value, else None.
    """

    name: str
    kind: Kind
    doc: str = ""
    fmt: str = ""
    size: int | None = None
    enum: type[IntEnum] | None = None
    encoding: str = ""
    const: bytes = b""
    element: Node | None = None
    fields: tuple[Node, ...] = ()
    struct_name: str = ""  # STRUCT: class name (shared struct, message or <Message><Field>)
    shared: bool = False  # STRUCT: one of spec.SHARED_STRUCTS
    construct: c.Construct | None = field(default=None, compare=False, repr=False)

    @property
    def fixed(self) -> bool:
        return self.size is not None

    @property
    def min_size(self) -> int:
        """Fewest bytes this field can take: its size, or its prefix and fixed parts."""
        if self.size is not None:
            return self.size
        if self.kind in PREFIXED_KINDS:
            return struct.calcsize(">" + self.fmt)
        return sum(child.min_size for child in self.fields)

    @property
    def largest(self) -> int:
        """Largest value of an integer field, or largest length (bytes, items) of a prefixed one."""
        if self.kind not in (Kind.UINT, Kind.SINT) and self.kind not in PREFIXED_KINDS:
            raise TypeError(f"{self.name} ({self.kind.value}) has no largest value")
        bits = 8 * struct.calcsize(">" + self.fmt)
        return 2 ** (bits - 1) - 1 if self.kind is Kind.SINT else 2 ** bits - 1

    @property
    def wire_type(self) -> str:
        """Short human name of the wire type, e.g. `u32`, `str16`, `array16<Str>`."""
        return _wire_type(self)

    def walk(self) -> Iterator[Node]:
        """This node and every node below it, depth first, in wire order."""
        yield self
        if self.element is not None:
            yield from self.element.walk()
        for child in self.fields:
            yield from child.walk()


# ---------------------------------------------------------------- names


def camel(name: str) -> str:
    """`PROC_START` or `proc_start` -> `ProcStart`."""
    return "".join(part.capitalize() for part in name.split("_"))


def class_name(message_type: MessageType) -> str:
    return camel(message_type.name)


def _singular(name: str) -> str:
    """Element name of an array field: `samples` -> `sample`, `processes` -> `process`."""
    for plural, single in (("ies", "y"), ("sses", "ss"), ("sses", "ss"), ("s", "")):
        if name.endswith(plural) and len(name) > len(plural):
            return name[: -len(plural)] + single
    return name


# ---------------------------------------------------------------- enums


def _known_enums() -> list[type[IntEnum]]:
    found: list[type[IntEnum]] = [MessageType, spec.FrameFlag, ErrorCode]
    for value in vars(_enums).values():
        if isinstance(value, type) and issubclass(value, IntEnum) and value is not IntEnum:
            found.append(value)
    return found


def _enum_for(mapping: dict[str, int]) -> type[IntEnum]:
    """The IntEnum whose members are exactly `mapping` (construct keeps only the mapping)."""
    matches = [e for e in _known_enums() if {m.name: m.value for m in e} == mapping]
    if len(matches) != 1:
        raise TypeError(f"no unique IntEnum for construct mapping {mapping!r}: {matches!r}")
    return matches[0]


# ---------------------------------------------------------------- the walker


def _unrename(con: c.Construct) -> tuple[c.Construct, str, str]:
    """Strip `Renamed` layers, keeping the outermost name and doc."""
    name, doc = "", ""
    while isinstance(con, c.Renamed):
        name = name or (con.name or "")
        doc = doc or (con.docs or "")
        con = con.subcon
    return con, name, doc


def _format_field(con: c.FormatField) -> tuple[str, int]:
    # Normalise to the standard-size letters ('>L' is 4 bytes, but 'L' alone is native).
    fmt = con.fmtstr.lstrip("<>=!").replace("L", "I").replace("l", "i")
    size = struct.calcsize(">" + fmt)
    if con.fmtstr[:1] != ">" and size > 1:
        raise TypeError(f"only big-endian fields belong on the wire, got {con.fmtstr!r}")
    return fmt, size


def _prefix(con: c.Construct) -> str:
    con, _, _ = _unrename(con)
    if not isinstance(con, c.FormatField) or _format_field(con)[0] not in ("B", "H", "I", "Q"):
        raise TypeError(f"length and count prefixes must be unsigned integers, got {con!r}")
    return _format_field(con)[0]


def _scalar(con: c.Construct, name: str, doc: str) -> Node | None:
    if isinstance(con, c.FormatField):
        fmt, size = _format_field(con)
        kind = Kind.FLOAT if fmt in "efd" else Kind.SINT if fmt.islower() else Kind.UINT
        return Node(name, kind, doc, fmt, size, construct=con)
    if con is c.Flag:
        return Node(name, Kind.BOOL, doc, "B", 1, construct=con)
    if isinstance(con, c.Enum):
        fmt, size = _format_field(con.subcon)
        return Node(name, Kind.ENUM, doc, fmt, size, _enum_for(dict(con.encmapping)), construct=con)
    if isinstance(con, c.FlagsEnum):
        fmt, size = _format_field(con.subcon)
        return Node(name, Kind.FLAGS, doc, fmt, size, _enum_for(dict(con.flags)), construct=con)
    if isinstance(con, c.Const):
        value = con.value
        return Node(name, Kind.CONST, doc, f"{len(value)}s", len(value), const=value, construct=con)
    if isinstance(con, c.Bytes) and isinstance(con.length, int):
        return Node(name, Kind.BYTES, doc, f"{con.length}s", con.length, construct=con)
    return None


def _is_greedy_prefixed(con: c.Construct) -> bool:
    return isinstance(con, c.Prefixed) and con.subcon is c.GreedyBytes


def _array_parts(con: c.Construct) -> tuple[c.Construct, c.Construct] | None:
    """(countfield, element) of a `PrefixedArray` macro, else None."""
    if not (isinstance(con, c.FocusedSeq) and con.parsebuildfrom == "items"):
        return None
    count, items = (_unrename(sub)[0] for sub in con.subcons)
    if isinstance(count, c.Rebuild) and isinstance(items, c.Array):
        return count.subcon, items.subcon
    return None


def walk(con: c.Construct, name: str = "", doc: str = "", owner: str = "") -> Node:
    """Turn a spec construct into a Node. `owner` names anonymous nested structs."""
    con, inner_name, inner_doc = _unrename(con)
    name, doc = name or inner_name, doc or inner_doc
    scalar = _scalar(con, name, doc)
    if scalar is not None:
        return scalar
    if isinstance(con, c.StringEncoded) and _is_greedy_prefixed(con.subcon):
        fmt = _prefix(con.subcon.lengthfield)
        return Node(name, Kind.STRING, doc, fmt, encoding=con.encoding, construct=con)
    if _is_greedy_prefixed(con):
        return Node(name, Kind.BLOB, doc, _prefix(con.lengthfield), construct=con)
    parts = _array_parts(con)
    if parts is not None:
        element = walk(parts[1], _singular(name), "", owner)
        return Node(name, Kind.ARRAY, doc, _prefix(parts[0]), element=element, construct=con)
    if isinstance(con, c.Struct):
        return _struct(con, name, doc, owner + camel(name) if owner else camel(name))
    raise TypeError(f"the spec walker does not understand field {name!r}: {con!r}")


def _struct(con: c.Struct, name: str, doc: str, anonymous_name: str) -> Node:
    shared = _shared_name(con)
    struct_name = shared or anonymous_name
    fields = tuple(walk(sub, owner=struct_name) for sub in con.subcons)
    for child in fields:
        if not child.name:
            raise TypeError(f"{struct_name}: every field needs a name")
    size = sum(f.size for f in fields if f.size is not None)
    fixed = all(f.fixed for f in fields)
    return Node(
        name, Kind.STRUCT, doc, "", size if fixed else None, fields=fields,
        struct_name=struct_name, shared=bool(shared), construct=con,
    )


def _shared_name(con: c.Construct) -> str:
    for name, shared in spec.SHARED_STRUCTS.items():
        if shared is con:
            return name
    return ""


# ---------------------------------------------------------------- the spec


def header() -> Node:
    return _struct(spec.HEADER, "header", "", "Header")


def body(message_type: MessageType) -> Node:
    """The body of one message type, as a STRUCT node named after its class."""
    con = spec.BODIES[message_type]
    node = _struct(con, "body", "", class_name(message_type))
    # A body that is also a shared struct still gets its own message class.
    return Node(
        node.name, node.kind, node.doc, node.fmt, node.size, fields=node.fields,
        struct_name=class_name(message_type), construct=con,
    )


@functools.cache
def body_field(message_type: MessageType, name: str) -> Node:
    """One top-level field of a body (what the console checks values against)."""
    for child in body(message_type).fields:
        if child.name == name:
            return child
    raise KeyError(f"{class_name(message_type)} has no field {name!r}")


def messages() -> list[tuple[MessageType, Node]]:
    return [(mt, body(mt)) for mt in MessageType]


def shared_structs() -> dict[str, Node]:
    return {name: _struct(con, name, "", name) for name, con in spec.SHARED_STRUCTS.items()}


def nested_structs() -> list[Node]:
    """Every struct used inside a body (shared or anonymous), dependencies first, once each."""
    seen: dict[str, Node] = {}

    def visit(node: Node) -> None:
        for child in node.fields or ((node.element,) if node.element else ()):
            visit(child)
        if node.kind is Kind.STRUCT and node.name != "body" and node.struct_name not in seen:
            seen[node.struct_name] = node

    for _, node in messages():
        visit(node)
    return list(seen.values())


def enums_used() -> list[type[IntEnum]]:
    """Every IntEnum the header and bodies refer to, in first-use order."""
    found: list[type[IntEnum]] = []
    nodes = [header()] + [node for _, node in messages()]
    for top in nodes:
        for node in top.walk():
            if node.enum is not None and node.enum not in found:
                found.append(node.enum)
    if ErrorCode not in found:
        found.append(ErrorCode)
    return found


# ---------------------------------------------------------------- wire type names

_INT_NAMES = {"B": "u8", "H": "u16", "I": "u32", "Q": "u64",
              "b": "i8", "h": "i16", "i": "i32", "q": "i64", "f": "f32", "d": "f64"}


def _wire_type(node: Node) -> str:
    prefix_bits = str(struct.calcsize(">" + node.fmt) * 8) if node.kind in PREFIXED_KINDS else ""
    if node.kind in (Kind.UINT, Kind.SINT, Kind.FLOAT):
        return _INT_NAMES[node.fmt]
    if node.kind is Kind.BOOL:
        return "bool"
    if node.kind in (Kind.ENUM, Kind.FLAGS):
        assert node.enum is not None
        return f"{node.kind.value} {_INT_NAMES[node.fmt]} {node.enum.__name__}"
    if node.kind is Kind.CONST:
        return f"bytes[{node.size}] = {node.const!r}"
    if node.kind is Kind.BYTES:
        return f"bytes[{node.size}]"
    if node.kind is Kind.STRING:
        return f"str{prefix_bits}"
    if node.kind is Kind.BLOB:
        return f"blob{prefix_bits}"
    if node.kind is Kind.ARRAY:
        assert node.element is not None
        return f"array{prefix_bits}<{node.element.wire_type}>"
    return node.struct_name


# ---------------------------------------------------------------- generator entry points

REPO_ROOT = Path(__file__).resolve().parent.parent


def generator_main(
    render: Callable[[], str], target: Path, module: str, argv: Sequence[str]
) -> int:
    """Write `target` from `render()`, or with `--check` return 1 when it is stale.

    Shared by the generators of checked-in files (trio's `gen_exports --test` pattern).
    """
    text = render()
    current = target.read_text(encoding="utf-8") if target.exists() else None
    name = target.relative_to(REPO_ROOT)
    if "--check" in argv:
        if current != text:
            print(f"{name} is stale: regenerate it with python -m {module}")
            return 1
        return 0
    if current != text:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
        print(f"wrote {name}")
    return 0
