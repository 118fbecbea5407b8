"""protocol/ is sans-I/O (like h11): no trio, no sockets, no clocks, no logging.

Two checks: importing every protocol module in a fresh interpreter leaves trio
out of sys.modules, and no protocol module imports a forbidden module itself.
"""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PROTOCOL = Path(__file__).resolve().parents[2] / "protocol"
FORBIDDEN = {"trio", "anyio", "asyncio", "socket", "ssl", "selectors", "select", "logging",
             "time", "datetime", "threading", "subprocess"}


def _modules() -> list[str]:
    return sorted(f"protocol.{p.stem}" for p in PROTOCOL.glob("*.py") if p.stem != "__init__")


def test_importing_protocol_does_not_import_trio() -> None:
    code = (
        "import importlib, sys\n"
        f"for name in {_modules()!r}: importlib.import_module(name)\n"
        "print(sorted(m for m in ('trio', 'anyio', 'asyncio') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=PROTOCOL.parent)
    assert out.stdout.strip() == "[]"


def test_protocol_modules_import_nothing_that_does_io() -> None:
    offenders = []
    for path in sorted(PROTOCOL.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            else:
                continue
            offenders += [f"{path.name}: {n}" for n in names if n.split(".")[0] in FORBIDDEN]
    assert offenders == []
