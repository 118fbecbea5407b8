"""Importing the running code (lotc, admin_console, the codec) never loads construct.

construct is what protocol/spec.py is written in: the generators and the
reference codec (the tests' oracle) need it; of what runs, only `lotc
dissector` (which renders the Lua dissector from the spec) does, and it
imports protocol.luagen when run. Every module is imported in a fresh
interpreter, so an import anywhere is seen.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# The protocol modules that run; the rest (spec, walk, reference, *gen) build and test.
RUNTIME_PROTOCOL = ("codec", "enums", "errors", "frame", "message_types", "messages", "_fastcodec")

PROGRAM = f"""
import importlib, pkgutil, sys
import lotc, admin_console
names = [m.name for pkg in (lotc, admin_console)
         for m in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + ".")]
names += ["protocol." + n for n in {RUNTIME_PROTOCOL!r}]
for name in names:
    importlib.import_module(name)
loaded = sorted(m for m in sys.modules if m == "construct" or m.startswith("construct."))
print(len(names), loaded)
"""


def test_no_runtime_module_imports_construct() -> None:
    out = subprocess.run([sys.executable, "-c", PROGRAM], cwd=ROOT, capture_output=True,
                         text=True, timeout=120, check=True).stdout.split(maxsplit=1)
    assert int(out[0]) > 50, out  # the walk found the packages
    assert out[1].strip() == "[]", f"construct imported at run time: {out[1]}"


def test_wire_largest_matches_the_spec() -> None:
    from protocol import walk
    from protocol.codec import wire_largest

    for message_type, node in walk.messages():
        for field in node.fields:
            try:
                largest = field.largest
            except TypeError:
                continue
            assert wire_largest(message_type, field.name) == largest, (message_type, field.name)
