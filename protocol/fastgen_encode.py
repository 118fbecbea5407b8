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

    In "expression" mode (no arrays in the body) packed runs and payloads are
    collected as expressions for one final join; in "statement" mode they are
    appended to a `parts` list, because loops need statements. In both modes the
    header is packed with the first fields: in statement mode into `parts[0]`,
    reserved up front and filled in last, once `blen` (summed as parts are
    appended) is known, so the frame is one join with no second copy.
    """

    def __init__(self, names: Names, statements: bool) -> None:
        super().__init__(names)
        self.statements = statements
        self.run: list[tuple[str, str]] = []
        self.parts: list[str] = []
        self.lengths: list[str] = []  # expressions of lengths not yet added to `blen`
        self.head: str | None = None  # statement mode: the header's pack, for parts[0]
        self.counting = True  # False inside a fixed-size element's loop (counted before it)
        self.blen_started = False

    def emit(self, expr: str) -> None:
        if self.statements:
            self.line(f"ap({expr})")
        else:
            self.parts.append(expr)

    def flush(self) -> None:
        if self.run:
            fmt = "".join(f for f, _ in self.run)
            pack = f"{self.names.struct(fmt)}.pack({', '.join(e for _, e in self.run)})"
            size = struct.calcsize(">" + fmt)
            if self.statements and self.head is None:
                self.head, size = pack, size - spec.HEADER_SIZE  # goes to parts[0] at the end
            else:
                self.emit(pack)
            if self.statements and self.counting:
                self.lengths.append(str(size))
            self.run = []

    def add_lengths(self) -> None:
        """Statement mode: one `blen` update for the lengths collected so far."""
        if self.lengths:
            op = "+=" if self.blen_started else "="
            constant = sum(int(t) for t in self.lengths if t.isdigit())  # folded: one add
            terms = [t for t in self.lengths if not t.isdigit()] + ([str(constant)] if constant else [])
            self.line(f"blen {op} {' + '.join(terms)}")
            self.blen_started, self.lengths = True, []

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
            if self.counting:
                self.lengths.append(f"len({data})")
        else:
            self.array(node, expr)

    def array(self, node: Node, expr: str) -> None:
        element = node.element
        assert element is not None and self.statements
        items, item = self.local(node.name), self.local("x")
        self.line(f"{items} = {expr}")
        self.run.append((node.fmt, f"len({items})"))
        self.flush()
        counting = self.counting
        if counting and element.fixed:
            self.lengths.append(f"{element.size} * len({items})")  # once, not per element
            self.counting = False
        self.add_lengths()
        self.line(f"for {item} in {items}:")
        self.indent += 1
        if element.kind is Kind.STRUCT:
            self.struct(element, item)
        else:
            self.field(element, item)
        self.flush()
        self.add_lengths()
        self.indent -= 1
        self.counting = counting


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


def _has_array(node: Node) -> bool:
    return any(n.kind is Kind.ARRAY for n in node.walk())


def _header_run(message_type: int, length: str) -> list[tuple[str, str]]:
    return [("2s", "_MAGIC"), ("B", str(spec.VERSION)), ("B", str(message_type)),
            ("H", "flags"), ("I", "rid"), ("I", length)]


def encoder(message_type: spec.MessageType, node: Node, names: Names) -> list[str]:
    name = f"_enc_{node.struct_name}"
    head = f"def {name}(m: {node.struct_name}, rid: int, flags: int) -> bytes:"
    if _has_array(node):
        gen = _Encoder(names, statements=True)
        gen.line('parts: list[bytes] = [b""]  # parts[0]: the header and first fields, packed last')
        gen.line("ap = parts.append")
        gen.run = _header_run(int(message_type), "blen")
        gen.struct(node, "m")
        gen.flush()
        gen.add_lengths()
        gen.line(f"parts[0] = {gen.head}")
        gen.line('return b"".join(parts)')
        return [head, *gen.lines]
    gen = _Encoder(names, statements=False)
    # The header joins the first run; its length is the fixed size plus the payloads.
    gen.run = _header_run(int(message_type), str(node.size) if node.fixed else "blen")
    gen.struct(node, "m")
    gen.flush()
    if gen.lengths:
        gen.line(f"blen = {' + '.join([str(node.min_size), *gen.lengths])}")
    parts = gen.parts
    if len(parts) == 1:
        gen.line(f"return {parts[0]}")
    else:
        gen.line(f'return b"".join(({", ".join(parts)}))')
    return [head, *gen.lines]
