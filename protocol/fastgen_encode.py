"""The generator's shared pieces (names, functions) and its encoder half; see protocol/fastgen.py.

An encoder packs adjacent fixed-size fields, with the length or count prefix of
the variable field that follows them, into one precompiled `struct.Struct`, and
the frame header with the body's first fields; the frame is one `b"".join`.
"""
from __future__ import annotations

import struct
from enum import IntEnum

from protocol import spec
from protocol.walk import FIXED_KINDS, Kind, Node


class Names:
    """Module-level constants shared by all generated functions."""

    def __init__(self) -> None:
        self.structs: dict[str, str] = {}
        self.enum_decode: dict[type[IntEnum], str] = {}
        self.enum_encode: dict[type[IntEnum], str] = {}

    def struct(self, fmt: str) -> str:
        fmt = ">" + fmt
        if fmt not in self.structs:
            self.structs[fmt] = f"_S{len(self.structs)}"
        return self.structs[fmt]

    def decoder(self, enum: type[IntEnum]) -> str:
        return self.enum_decode.setdefault(enum, f"_D_{enum.__name__}")

    def encoder(self, enum: type[IntEnum]) -> str:
        return self.enum_encode.setdefault(enum, f"_E_{enum.__name__}")

    def render(self) -> list[str]:
        out = [f"{name} = Struct({fmt!r})" for fmt, name in self.structs.items()]
        for enum, name in self.enum_decode.items():
            members = ", ".join(f"{int(m)}: {enum.__name__}.{m.name}" for m in enum)
            out.append(f"{name} = {{{members}}}")
        for enum, name in self.enum_encode.items():
            # Keys are ints, so IntEnum members and plain ints of the enum both map.
            out.append(f"{name} = {{{', '.join(f'{int(m)}: {int(m)}' for m in enum)}}}")
        return out


class Function:
    """Lines of one generated function, with unique local names."""

    def __init__(self, names: Names) -> None:
        self.names = names
        self.lines: list[str] = []
        self.indent = 1
        self.counter = 0

    def line(self, text: str) -> None:
        self.lines.append("    " * self.indent + text)

    def local(self, hint: str) -> str:
        self.counter += 1
        return f"{hint}_{self.counter}"


# ---------------------------------------------------------------- encoders


class _Encoder(Function):
    """Emit an encoder. Fixed items collect in `run` until a variable part needs them packed.

    The frame is one `b"".join` of expressions: the header packed with the
    body's first fields, then payloads and packed runs, in wire order. From the
    body's first array on, loops need statements: the rest is appended to a
    `parts` list, joined into `body` first, and its length added to `blen`.
    (Reserving parts[0] for the header and summing `blen` per element instead
    cost more on a 20-element stats report: an add per element.)
    """

    def __init__(self, names: Names) -> None:
        super().__init__(names)
        self.statements = False  # True from the first array on: `ap(...)` into `parts`
        self.run: list[tuple[str, str]] = []
        self.parts: list[str] = []  # expressions of the final join, before `body`
        self.lengths: list[str] = []  # expressions of the payloads' lengths among them
        self.fixed_bytes = -spec.HEADER_SIZE  # packed bytes among them, less the header's

    def emit(self, expr: str) -> None:
        if self.statements:
            self.line(f"ap({expr})")
        else:
            self.parts.append(expr)

    def flush(self) -> None:
        if self.run:
            fmt = "".join(f for f, _ in self.run)
            self.emit(f"{self.names.struct(fmt)}.pack({', '.join(e for _, e in self.run)})")
            if not self.statements:
                self.fixed_bytes += struct.calcsize(">" + fmt)
            self.run = []

    def struct(self, node: Node, expr: str) -> None:
        for child in node.fields:
            self.field(child, f"{expr}.{child.name}")

    def field(self, node: Node, expr: str) -> None:
        if node.kind in FIXED_KINDS:
            self.run.append(_encode_fixed(node, expr, self.names))
        elif node.kind is Kind.STRUCT:
            obj = self.local(node.name)
            self.line(f"{obj} = {expr}")
            self.struct(node, obj)
        elif node.kind in (Kind.STRING, Kind.BLOB):
            data = self.local(node.name)
            self.line(f"{data} = {expr}{'.encode()' if node.kind is Kind.STRING else ''}")
            self.run.append((node.fmt, f"len({data})"))
            self.flush()
            self.emit(data)
            if not self.statements:
                self.lengths.append(f"len({data})")
        else:
            self.array(node, expr)

    def array(self, node: Node, expr: str) -> None:
        assert node.element is not None
        items, item = self.local(node.name), self.local("x")
        self.line(f"{items} = {expr}")
        self.run.append((node.fmt, f"len({items})"))
        self.flush()
        if not self.statements:
            self.statements = True
            self.line("parts: list[bytes] = []")
            self.line("ap = parts.append")
        self.line(f"for {item} in {items}:")
        self.indent += 1
        if node.element.kind is Kind.STRUCT:
            self.struct(node.element, item)
        else:
            self.field(node.element, item)
        self.flush()
        self.indent -= 1


def _encode_fixed(node: Node, expr: str, names: Names) -> tuple[str, str]:
    if node.kind is Kind.ENUM:
        assert node.enum is not None
        return node.fmt, f"{names.encoder(node.enum)}[{expr}]"
    if node.kind is Kind.BOOL:
        return "?", expr  # struct's '?' packs truthiness, exactly like construct's Flag
    if node.kind is Kind.BYTES:
        return node.fmt, f"_fixed({expr}, {node.size})"
    if node.kind is Kind.CONST:
        return node.fmt, repr(node.const)
    return node.fmt, expr


def _header_run(message_type: int, length: str) -> list[tuple[str, str]]:
    return [("2s", "_MAGIC"), ("B", str(spec.VERSION)), ("B", str(message_type)),
            ("H", "flags"), ("I", "rid"), ("I", length)]


def encoder(message_type: spec.MessageType, node: Node, names: Names) -> list[str]:
    name = f"_enc_{node.struct_name}"
    head = f"def {name}(m: {node.struct_name}, rid: int, flags: int) -> bytes:"
    gen = _Encoder(names)
    # The header joins the first run; its length is the packed bytes plus the payloads.
    gen.run = _header_run(int(message_type), str(node.size) if node.fixed else "blen")
    gen.struct(node, "m")
    gen.flush()
    parts, lengths = gen.parts, gen.lengths
    if gen.statements:
        gen.line('body = b"".join(parts)')
        parts, lengths = [*parts, "body"], [*lengths, "len(body)"]
    if lengths:
        gen.line(f"blen = {' + '.join([*lengths, str(gen.fixed_bytes)])}")
    if len(parts) == 1:
        gen.line(f"return {parts[0]}")
    else:
        gen.line(f'return b"".join(({", ".join(parts)}))')
    return [head, *gen.lines]
