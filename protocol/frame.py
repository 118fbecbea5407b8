"""`Frame`: one decoded frame. Its own module so the generated codec can build it too."""
from __future__ import annotations

from dataclasses import dataclass

from protocol.messages import Message


@dataclass(frozen=True, slots=True)
class Frame:
    """One decoded frame: the body and the header fields callers need."""

    body: Message
    request_id: int = 0
    more: bool = False  # header flag MORE: further frames of this reply follow


class FrameTwin:
    """Frame's slots without the frozen __setattr__: decoders fill one in, then make it a
    Frame by setting `__class__` (a frozen dataclass's __init__ costs a call and an
    object.__setattr__ per field; see protocol/fastgen.py)."""

    __slots__ = Frame.__slots__
    body: Message
    request_id: int
    more: bool
