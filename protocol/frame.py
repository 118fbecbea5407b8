"""`Frame`: one decoded frame. Its own module so the generated codec can build it too."""
from __future__ import annotations

from typing import NamedTuple

from protocol.messages import Message


class Frame(NamedTuple):
    """One decoded frame: the body and the header fields callers need.

    A NamedTuple rather than a frozen dataclass: it is just as immutable, and the
    decoders build one with a single C call, `tuple.__new__(Frame, (body, rid, more))`,
    where a frozen dataclass cost an object.__setattr__ per field (or, built
    through a twin class, a `__class__` switch that was a fifth of a heartbeat's
    round trip; see protocol/fastgen.py).
    """

    body: Message
    request_id: int = 0
    more: bool = False  # header flag MORE: further frames of this reply follow
