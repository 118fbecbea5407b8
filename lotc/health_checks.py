"""Health checks as operators write them (`--check`), parsed once for the console, the
server and the agent (issue 17 item 2). Pure: no I/O.

    http://127.0.0.1:8080/healthz   healthy on a 2xx or 3xx answer
    tcp:8080  or  tcp:HOST:8080     healthy when the connection opens
    exec:"CMD ARGS"                 healthy when CMD exits 0 (run without a shell)

The canonical text is what travels and is stored: `http://...` as given, `tcp:HOST:PORT`
with the host filled in (127.0.0.1), `exec:` and the command re-quoted.
"""
from __future__ import annotations

import shlex
import urllib.parse
from dataclasses import dataclass

from lotc.errors import InvalidRequest

__all__ = ["Check", "parse_check"]

DEFAULT_HOST = "127.0.0.1"
MAX_CHECK = 1024
_HELP = 'write http://HOST:PORT/PATH, tcp:PORT or exec:"CMD ARGS"'


@dataclass(frozen=True)
class Check:
    kind: str  # "http", "tcp" or "exec"
    url: str = ""
    host: str = ""
    port: int = 0
    argv: tuple[str, ...] = ()

    def text(self) -> str:
        if self.kind == "http":
            return self.url
        if self.kind == "tcp":
            host = f"[{self.host}]" if ":" in self.host else self.host
            return f"tcp:{host}:{self.port}"
        return "exec:" + shlex.join(self.argv)


def _port(text: str, whole: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise InvalidRequest(f"{whole[:60]!r}: the port must be from 1 to 65535")
    return int(text)


def parse_check(text: str) -> Check:
    """The check `text` names; InvalidRequest in plain words."""
    if not text or len(text) > MAX_CHECK or "\0" in text:
        raise InvalidRequest(f"a check is 1 to {MAX_CHECK} characters: {_HELP}")
    if text.startswith(("http://", "https://")):
        parts = urllib.parse.urlsplit(text)
        if not parts.hostname:
            raise InvalidRequest(f"{text[:60]!r} names no host: {_HELP}")
        try:
            parts.port  # noqa: B018  (raises on a bad port)
        except ValueError:
            raise InvalidRequest(f"{text[:60]!r}: the port must be from 1 to 65535") from None
        return Check("http", url=text)
    if text.startswith("tcp:"):
        rest = text[4:]
        host, sep, port = rest.rpartition(":")
        host = host.strip("[]") if sep else DEFAULT_HOST
        return Check("tcp", host=host or DEFAULT_HOST, port=_port(port, text))
    if text.startswith("exec:"):
        try:
            argv = tuple(shlex.split(text[5:]))
            if len(argv) == 1 and any(c.isspace() for c in argv[0]):
                argv = tuple(shlex.split(argv[0]))  # exec:"CMD ARGS", quoted as a whole
        except ValueError as exc:
            raise InvalidRequest(f"{text[:60]!r}: {exc}") from None
        if not argv:
            raise InvalidRequest(f"{text[:60]!r} names no command: {_HELP}")
        return Check("exec", argv=argv)
    raise InvalidRequest(f"{text[:60]!r} is not a check: {_HELP}")
