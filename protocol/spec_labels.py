"""Agent labels on the wire (issue 17, message numbers 110-114): part of the spec.

protocol/spec.py merges these into BODIES and SHARED_STRUCTS (who may send them:
protocol/message_types.py's CONTRACT), so the generators and the codec see them
like any other message. An agent announcing the "labels" capability sends
AGENT_LABELS (its `--label`s) before its first AGENT_STATE when it has any; an
AGENT_STATE with no AGENT_LABELS before it means it has none now (so a new agent
without labels sends nothing an older server does not know). An agent of release
1 announces nothing and has only the labels set from the console (LABEL_SET,
LABEL_UNSET). A console label overrides the agent's own for the same key until
LABEL_UNSET removes it. Key and value syntax: lotc/selectors.py.
"""
from __future__ import annotations

from construct import Int32ub, Struct

from protocol.message_types import MessageType
from protocol.vocabulary import Str, array_of

Label = Struct(
    "key" / Str * "1-63 of letters, digits, '.', '_', '-', '/' (lotc/selectors.py)",
    "value" / Str * "1-63 of letters, digits, '.', '_', '-'",
)

LabelsEntry = Struct(
    "agent" / Str,
    "announced" / array_of(Label) * "what the agent said at connect (--label)",
    "console" / array_of(Label) * "set from the console: these win over the agent's",
)

SELECTOR = "a selector: name, glob, 'all', comma list or label terms"

LABEL_BODIES: dict[MessageType, Struct] = {
    MessageType.AGENT_LABELS: Struct(
        "labels" / array_of(Label) * "the agent's --label options; replaces what it said before",
    ),
    MessageType.LABEL_SET: Struct(
        "target" / Str * SELECTOR,
        "labels" / array_of(Label) * "set from the console (reply RESULTS)",
    ),
    MessageType.LABEL_UNSET: Struct(
        "target" / Str * SELECTOR,
        "keys" / array_of(Str) * "console labels to remove (reply RESULTS)",
    ),
    MessageType.LIST_LABELS: Struct("pattern" / Str * f"{SELECTOR}; empty means all"),
    MessageType.LABEL_LIST: Struct("agents" / array_of(LabelsEntry, Int32ub)),
}

LABEL_STRUCTS: dict[str, Struct] = {"Label": Label, "LabelsEntry": LabelsEntry}
