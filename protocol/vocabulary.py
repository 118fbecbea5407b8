"""The field types the spec is written in (protocol/spec.py re-exports them).

Kept apart so that the parts of the spec that live in their own modules
(protocol/spec_labels.py) are built from the same objects as the rest. The
walkers understand exactly these shapes; see spec.py's docstring.
"""
from __future__ import annotations

from enum import IntEnum

from construct import (
    Bytes,
    Construct,
    Enum,
    GreedyBytes,
    Int8ub,
    Int16ub,
    Int32ub,
    Int64sb,
    PascalString,
    Prefixed,
    PrefixedArray,
)

__all__ = ["Blob", "DurationMs", "Sha256", "Str", "Text", "TimeUs", "array_of", "enum_of"]

Str = PascalString(Int16ub, "utf8")
Text = PascalString(Int32ub, "utf8")
Blob = Prefixed(Int32ub, GreedyBytes)
Sha256 = Bytes(32)
TimeUs = Int64sb
DurationMs = Int32ub


def enum_of(values: type[IntEnum], width: Construct = Int8ub) -> Construct:
    return Enum(width, values)


def array_of(element: Construct, count: Construct = Int16ub) -> Construct:
    return PrefixedArray(count, element)
