"""Build the single-file agent, lotc-agent.pyz, from the packages already installed.

Why a hand-made zipapp and not shiv or pex
------------------------------------------
All three give one executable zip that the node's python3 runs. shiv and pex
would be one more build dependency (fetched from the network, which build
machines may not have) and both build from wheels, so they re-resolve and
re-download what the venv already holds. Ours is ~200 lines of stdlib: it
copies the installed files of the agent's runtime distributions (the files
their RECORDs list, from this very environment's site-packages) and the lotc
and protocol sources, and adds a small stdlib-only `__main__.py`
(lotc/pyz_bootstrap.py) that extracts the payload once into a cache directory
keyed by the payload's hash, since zipimport cannot load psutil's compiled
extension. That is shiv's run-time model, without its build-time machinery.

Reproducible: entries are sorted, every timestamp is 1980-01-01, modes and
the creating system are fixed and nothing depends on the build's clock,
user or path, so the same sources and installed packages give the same bytes.
The compression comes from the local zlib; a different zlib build may
compress differently (the extracted payload, and its hash, are the same).
The archive is only as portable as its compiled extensions: it runs on nodes
with the build machine's platform (e.g. linux-x86_64) and, unless every
extension uses the stable ABI (psutil's does), its Python minor version;
the bootstrap refuses other nodes in plain words.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import sysconfig
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from importlib import import_module, metadata
from pathlib import Path

import lotc
import protocol
from lotc.errors import InvalidRequest
from lotc.pyz_bootstrap import MANIFEST, PAYLOAD

logger = logging.getLogger(__name__)

# What the agent imports at run time (pyproject's dependencies minus the console's).
AGENT_REQUIREMENTS = ("trio", "construct", "ntplib", "croniter", "psutil")
SHEBANG = b"#!/usr/bin/env python3\n"
FIXED_TIME = (1980, 1, 1, 0, 0, 0)  # the earliest time a zip entry can carry
FILE_MODE = 0o100644
UNIX = 3  # zip "made by" system: keeps the mode bits meaningful everywhere
COMPRESS_LEVEL = 9
# Parts of lotc a node never runs; they would only drag in the server's code.
LEFT_OUT = ("lotc/server/", "lotc/commands/")
KEPT_COMMANDS = ("lotc/commands/agent_cmd.py",)
# lotc/commands/__init__.py imports every subcommand (and so the console and
# prompt_toolkit); the agent needs none of them.
COMMANDS_INIT = b'"""Only `lotc agent` ships in the single-file agent."""\n'
NATIVE = re.compile(r"\.(so|pyd)$|\.so\.")


@dataclass(frozen=True)
class Built:
    path: Path
    files: int
    size: int
    sha256: str
    distributions: tuple[str, ...]


def _marker_true(marker: str) -> bool:
    try:
        markers = import_module("packaging.markers")
    except ImportError:  # a bare venv: pip vendors the same module
        markers = import_module("pip._vendor.packaging.markers")
    return bool(markers.Marker(marker).evaluate({"extra": ""}))


def _requirement_names(dist: metadata.Distribution) -> Iterator[str]:
    for line in dist.requires or ():
        name, _, marker = line.partition(";")
        if marker.strip() and not _marker_true(marker.strip()):
            continue  # another platform's, an older Python's, or an extra's
        match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", name)
        if match:
            yield match.group(1)


def runtime_distributions(roots: Iterable[str] = AGENT_REQUIREMENTS) -> list[metadata.Distribution]:
    """`roots` and everything they need here, in name order."""
    found: dict[str, metadata.Distribution] = {}
    todo = list(roots)
    while todo:
        name = re.sub(r"[-_.]+", "-", todo.pop()).lower()
        if name in found:
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            raise InvalidRequest(f"the agent needs {name!r}, which is not installed in "
                                 f"this environment") from None
        found[name] = dist
        todo.extend(_requirement_names(dist))
    return [found[name] for name in sorted(found)]


def distribution_files(dist: metadata.Distribution) -> Iterator[tuple[str, Path]]:
    """(path inside site-packages, file) for every installed file but bytecode and scripts."""
    for entry in dist.files or ():
        arcname = entry.as_posix()
        if arcname.startswith("../") or "__pycache__/" in arcname or arcname.endswith(".pyc"):
            continue  # console scripts live outside site-packages; bytecode is rebuilt
        path = Path(str(entry.locate()))
        if path.is_file():
            yield arcname, path


def source_files() -> Iterator[tuple[str, Path]]:
    """lotc and protocol as they are on disk, without the parts a node never runs."""
    for package in (lotc, protocol):
        root = Path(package.__file__).parent  # type: ignore[arg-type]
        for path in sorted(root.rglob("*.py")):
            arcname = path.relative_to(root.parent).as_posix()
            if "__pycache__/" in arcname:
                continue
            if arcname.startswith(LEFT_OUT) and arcname not in KEPT_COMMANDS:
                continue
            yield arcname, path


def collect_payload() -> tuple[dict[str, bytes], list[str]]:
    payload: dict[str, bytes] = {"lotc/commands/__init__.py": COMMANDS_INIT}
    names = []
    for dist in runtime_distributions():
        names.append(f"{dist.metadata['Name']}=={dist.version}")
        for arcname, path in distribution_files(dist):
            payload[arcname] = path.read_bytes()
    for arcname, path in source_files():
        payload[arcname] = path.read_bytes()
    return payload, names


def payload_digest(payload: dict[str, bytes]) -> str:
    digest = hashlib.sha256()
    for name in sorted(payload):
        data = payload[name]
        digest.update(f"{name}\0{len(data)}\0".encode())
        digest.update(data)
    return digest.hexdigest()


def manifest_for(payload: dict[str, bytes], names: list[str]) -> dict[str, object]:
    natives = sorted(name for name in payload if NATIVE.search(name))
    # Extensions built for one interpreter (not the stable ABI) pin the node's Python.
    pinned = [name for name in natives if ".abi3." not in name]
    return {
        "version": lotc.__version__,
        "payload_sha256": payload_digest(payload),
        "platform": sysconfig.get_platform(),
        "soabi": sysconfig.get_config_var("SOABI") if pinned else "",
        "python_requires": ">=3.11",
        "distributions": names,
        "native_extensions": natives,
    }


def _entry(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=FIXED_TIME)
    info.compress_type = zipfile.ZIP_DEFLATED
    info.create_system = UNIX
    info.external_attr = FILE_MODE << 16
    return info


def write_archive(out: Path, entries: dict[str, bytes]) -> None:
    """Shebang, then a zip of `entries` in name order, renamed into place when complete."""
    partial = out.with_name(f".{out.name}.partial")
    with open(partial, "wb") as sink:
        sink.write(SHEBANG)
        with zipfile.ZipFile(sink, "w", compresslevel=COMPRESS_LEVEL) as archive:
            for name in sorted(entries):
                archive.writestr(_entry(name), entries[name])
    partial.chmod(0o755)
    os.replace(partial, out)


def build(out: Path) -> Built:
    payload, names = collect_payload()
    manifest = manifest_for(payload, names)
    bootstrap = Path(__file__).with_name("pyz_bootstrap.py").read_bytes()
    entries = {f"{PAYLOAD}{name}": data for name, data in payload.items()}
    entries["__main__.py"] = bootstrap
    entries[MANIFEST] = json.dumps(manifest, indent=1, sort_keys=True).encode() + b"\n"
    write_archive(out, entries)
    data = out.read_bytes()
    logger.debug("built %s from %s", out, ", ".join(names))
    return Built(out, len(entries), len(data), hashlib.sha256(data).hexdigest(), tuple(names))
