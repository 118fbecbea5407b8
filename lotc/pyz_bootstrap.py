"""Start-up code of the single-file agent: it becomes `__main__.py` of lotc-agent.pyz.

Theory of operation
-------------------
The archive holds a manifest and a payload (`site/...`: lotc, protocol and
the agent's dependencies, psutil's compiled extension among them). zipimport
cannot load compiled extensions, so on first start the whole payload is
extracted into a cache directory named after the payload's SHA-256 (computed
at build time, stored in the manifest), then imported from there like any
installed package; later starts find the directory and only pay for the
import, with bytecode cached beside the sources. Extraction goes to a private
temporary directory renamed into place, so two agents starting at once, or a
start killed half-way, never leave a half-filled cache entry.

This file runs on the node before anything else is importable: stdlib only,
and it must work on every Python the agent supports (3.11+).
"""
from __future__ import annotations

import json
import os
import shutil
import sys
import sysconfig
import tempfile
import zipfile
from pathlib import Path

MANIFEST = "lotc-agent-manifest.json"
PAYLOAD = "site/"
CACHE_ENV = "LOTC_AGENT_CACHE"
MIN_PYTHON = (3, 11)
EXIT_CANNOT_RUN = 2


def fail(message: str) -> None:
    print(f"lotc-agent: {message}", file=sys.stderr)
    raise SystemExit(EXIT_CANNOT_RUN)


def cache_root() -> Path:
    """$LOTC_AGENT_CACHE, else the XDG cache dir; /tmp when home is not writable."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    root = Path(base) / "lotc-agent"
    try:
        root.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError:
        root = Path(tempfile.gettempdir()) / f"lotc-agent-{os.getuid()}"
    return root


def check_compatible(manifest: dict[str, str]) -> None:
    """Refuse, in plain words, a node the compiled extensions were not built for."""
    if sys.version_info < MIN_PYTHON:
        fail(f"needs Python {'.'.join(map(str, MIN_PYTHON))}+, this is {sys.version.split()[0]}")
    platform = sysconfig.get_platform()
    if manifest["platform"] != platform:
        fail(f"built for {manifest['platform']}, this node is {platform}: "
             f"build the agent on a machine like the node")
    soabi = sysconfig.get_config_var("SOABI") or ""
    if manifest.get("soabi") and manifest["soabi"] != soabi:
        fail(f"its compiled extensions need {manifest['soabi']}, this Python is {soabi}")


def cache_entry(manifest: dict[str, str]) -> str:
    """The cache directory's name for a payload: its version and hash."""
    return f"{manifest['version']}-{manifest['payload_sha256'][:20]}"


def extract(archive: zipfile.ZipFile, target: Path) -> None:
    target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        for info in archive.infolist():
            name = info.filename
            if not name.startswith(PAYLOAD) or name.endswith("/"):
                continue
            relative = Path(name[len(PAYLOAD):])
            if relative.is_absolute() or ".." in relative.parts:
                fail(f"refusing a payload path outside the cache: {name}")
            path = staging / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            with archive.open(info) as source, open(path, "wb") as sink:
                shutil.copyfileobj(source, sink)
        staging.chmod(0o755)
        try:
            os.rename(staging, target)
        except OSError:
            if not target.is_dir():  # not a lost race with a twin start: a real failure
                raise
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def prepare(archive_path: str) -> Path:
    """The directory to import the payload from, extracted if need be."""
    with zipfile.ZipFile(archive_path) as archive:
        manifest = json.loads(archive.read(MANIFEST))
        check_compatible(manifest)
        target = cache_root() / cache_entry(manifest)
        if not target.is_dir():
            try:
                extract(archive, target)
            except OSError as exc:
                fail(f"cannot extract into {target.parent} (set {CACHE_ENV}): {exc}")
    return target


def main() -> None:
    archive_path = os.path.dirname(os.path.abspath(__file__))
    site = prepare(archive_path)
    # Import only from the extracted copy: never half from the zip, half from disk.
    sys.path[:] = [str(site)] + [p for p in sys.path if os.path.abspath(p) != archive_path]
    from lotc.agent.__main__ import main as agent_main

    sys.exit(agent_main())


if __name__ == "__main__":
    main()
