"""Why a connection ended, told from the exception that ended it.

trio nurseries wrap what their tasks raise in ExceptionGroups, so the
handler of a connection sees a group where one task's PeerClosed or
ProtocolError is the real story. `principal` digs that one out, so the
boundary code can tell "the peer left" from "the peer sent garbage" from
"we have a bug", and react to each once.
"""
from __future__ import annotations

import trio

from lotc.exc_groups import leaves
from lotc.net.framed import PeerClosed
from protocol.errors import LotcError

# The peer or the network ended it, or we closed it: routine, worth a debug line.
CONNECTION_ENDED = (
    PeerClosed, trio.BrokenResourceError, trio.ClosedResourceError, trio.TooSlowError,
    ConnectionError,
)


def principal(exc: BaseException) -> BaseException:
    """The most telling leaf: a bug first, then a protocol/domain error, then an ending."""
    found = leaves(exc)
    for leaf in found:
        if not isinstance(leaf, CONNECTION_ENDED + (LotcError,)):
            return leaf
    for leaf in found:
        if isinstance(leaf, LotcError):
            return leaf
    return found[0]
