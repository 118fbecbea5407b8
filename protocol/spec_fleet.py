"""Bundle versions and rollback on the wire (issue 17 item 4, message numbers 116-119):
part of the spec.

protocol/spec.py merges these into BODIES and SHARED_STRUCTS (who may send them:
protocol/message_types.py's CONTRACT). An agent announcing "bundle-versions" keeps
the newest replaced versions of each bundle (lotc/agent/bundle_versions.py), lists
them (LIST_BUNDLE_VERSIONS -> BUNDLE_VERSIONS) and makes one current again
(BUNDLE_SWITCH, answered with BUNDLE_VERSIONS holding the new current one). ROLLBACK
is the console's: the server switches and restarts agent after agent, rolling.
"""
from __future__ import annotations

from construct import Flag, Int16ub, Int32ub, Int64ub, Struct

from protocol.enums import BundleKind
from protocol.message_types import MessageType
from protocol.vocabulary import DurationMs, Sha256, Str, TimeUs, array_of, enum_of

SELECTOR = "a selector: name, glob, 'all', comma list or label terms"

BundleVersion = Struct(
    "agent" / Str * "agent holding it (empty in an agent's own answer)",
    "name" / Str,
    "sha256" / Sha256,
    "kind" / enum_of(BundleKind),
    "size" / Int64ub,
    "stored_us" / TimeUs,
    "current" / Flag * "the version new runs use",
)

FLEET_BODIES: dict[MessageType, Struct] = {
    MessageType.LIST_BUNDLE_VERSIONS: Struct(
        "target" / Str * SELECTOR, "name" / Str * "bundle; empty for every bundle"),
    MessageType.BUNDLE_VERSIONS: Struct("versions" / array_of(BundleVersion, Int32ub)),
    MessageType.ROLLBACK: Struct(
        "target" / Str * SELECTOR, "name" / Str * "bundle",
        "sha256" / Str * "hex prefix of the version; empty for the one before the current",
        "max_unavailable" / Int16ub * "agents rolled back at once; 0 means 1",
        "healthy_deadline_ms" / DurationMs * "each batch must be ready within this",
    ),
    MessageType.BUNDLE_SWITCH: Struct(
        "name" / Str * "bundle", "sha256" / Str * "hex prefix; empty: the one before"),
}

FLEET_STRUCTS: dict[str, Struct] = {"BundleVersion": BundleVersion}
