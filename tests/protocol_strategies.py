"""Hypothesis strategies for LOTC messages, derived by walking the spec.

Every field kind gets values across its whole wire range: integers to their
limits, float32-representable floats (NaN excluded: it is never equal to
itself), text with non-ASCII characters, empty and non-empty arrays, every
enum member. Shared by tests/unit/test_fastpath.py and tests/fuzz/.
"""
from __future__ import annotations

from functools import cache
from itertools import pairwise
from typing import Any

from hypothesis import strategies as st

from protocol import messages, walk
from protocol.codec import encode
from protocol.messages import Message
from protocol.spec import MessageType
from protocol.walk import Kind, Node

MAX_TEXT = 12  # characters: up to 48 bytes of UTF-8, far below any prefix limit
MAX_ITEMS = 3  # array elements: nested arrays stay small and fast


def field_strategy(node: Node) -> st.SearchStrategy[Any]:
    if node.kind is Kind.UINT:
        assert node.size is not None
        return st.integers(0, 2 ** (8 * node.size) - 1)
    if node.kind is Kind.SINT:
        assert node.size is not None
        bits = 8 * node.size - 1
        return st.integers(-(2**bits), 2**bits - 1)
    if node.kind is Kind.FLOAT:
        return st.floats(width=32, allow_nan=False)
    if node.kind is Kind.BOOL:
        return st.booleans()
    if node.kind is Kind.ENUM:
        assert node.enum is not None
        return st.sampled_from(list(node.enum))
    if node.kind is Kind.BYTES:
        return st.binary(min_size=node.size or 0, max_size=node.size or 0)
    if node.kind is Kind.BLOB:
        return st.binary(max_size=64)
    if node.kind is Kind.STRING:
        return st.text(max_size=MAX_TEXT)
    if node.kind is Kind.ARRAY:
        assert node.element is not None
        return st.lists(field_strategy(node.element), max_size=MAX_ITEMS).map(tuple)
    if node.kind is Kind.STRUCT:
        return struct_strategy(node)
    raise TypeError(f"no strategy for {node.kind}")


def struct_strategy(node: Node) -> st.SearchStrategy[Any]:
    cls = getattr(messages, node.struct_name)
    return st.builds(cls, **{child.name: field_strategy(child) for child in node.fields})


@cache
def message_strategy(message_type: MessageType) -> st.SearchStrategy[Message]:
    return struct_strategy(walk.body(message_type))


def any_message() -> st.SearchStrategy[Message]:
    return st.sampled_from(list(MessageType)).flatmap(message_strategy)


def frames() -> st.SearchStrategy[tuple[Message, int, bool]]:
    """(body, request_id, more) triples."""
    return st.tuples(any_message(), st.integers(0, 2**32 - 1), st.booleans())


def encoded_stream(items: list[tuple[Message, int, bool]]) -> bytes:
    return b"".join(encode(body, rid, more) for body, rid, more in items)


@st.composite
def split_points(draw: st.DrawFn, data: bytes) -> list[bytes]:
    """`data` cut into pieces at random points (possibly empty pieces, possibly one piece)."""
    cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=12)))
    bounds = [0, *cuts, len(data)]
    return [data[a:b] for a, b in pairwise(bounds)]
