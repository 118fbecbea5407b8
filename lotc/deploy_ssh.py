"""Running commands on a node over SSH, with the system's OpenSSH client.

The system `ssh` is used, not a Python SSH library: it already knows the
operator's keys, agent, known_hosts, jump hosts and ~/.ssh/config, and it is
what operators debug with. Every call runs in BatchMode (a password prompt
would hang a deploy) and leaves host-key checking as the user configured it;
`-o` options pass through (the tests point it at a throwaway known_hosts).

Files and secrets travel on the command's stdin (`cat > file` on the node),
never as arguments: nothing secret appears in `ps` on either end, and the node
needs neither scp nor an SFTP subsystem.
"""
from __future__ import annotations

import logging
import shlex
import subprocess
from dataclasses import dataclass, field

from lotc.errors import LotcError

logger = logging.getLogger(__name__)

SSH_FAILED = 255  # what ssh exits with when it, not the remote command, failed
DEFAULT_TIMEOUT_S = 120.0  # one step: long enough to copy the agent over a slow link
CONNECT_TIMEOUT_S = 15


class RemoteError(LotcError):
    """A command on the node failed, or the node could not be reached."""


@dataclass(frozen=True)
class Remote:
    target: str  # USER@HOST (or HOST)
    port: int = 22
    identity: str | None = None
    options: tuple[str, ...] = field(default=())  # extra `-o` options

    def ssh_argv(self, command: str) -> list[str]:
        argv = ["ssh", "-p", str(self.port), "-o", "BatchMode=yes",
                "-o", f"ConnectTimeout={CONNECT_TIMEOUT_S}"]
        if self.identity:
            argv += ["-i", self.identity, "-o", "IdentitiesOnly=yes"]
        for option in self.options:
            argv += ["-o", option]
        return [*argv, "--", self.target, command]

    def run(self, command: str, stdin: bytes = b"", *, what: str,
            timeout: float = DEFAULT_TIMEOUT_S, check: bool = True) -> str:
        """Run `command` (a shell line) on the node; its stdout, or RemoteError saying `what`."""
        logger.debug("ssh %s: %s", self.target, command)
        try:
            result = subprocess.run(self.ssh_argv(command), input=stdin, capture_output=True,
                                    timeout=timeout, check=False)
        except FileNotFoundError:
            raise RemoteError("no `ssh` client on this machine (install openssh-client)") from None
        except subprocess.TimeoutExpired:
            raise RemoteError(f"{what}: no answer from {self.target} within {timeout:g} s") from None
        stderr = result.stderr.decode(errors="replace").strip()
        if result.returncode == SSH_FAILED and check:
            raise RemoteError(f"cannot reach {self.target} over SSH (port {self.port}): "
                              f"{stderr or 'ssh failed'}")
        if result.returncode != 0 and check:
            raise RemoteError(f"{what} failed on {self.target} (exit {result.returncode}): "
                              f"{stderr or 'no message'}")
        return result.stdout.decode(errors="replace")

    def script(self, script: str, *args: str, what: str, check: bool = True,
               timeout: float = DEFAULT_TIMEOUT_S) -> str:
        """Run a POSIX sh script (sent on stdin) with positional arguments."""
        command = "sh -s -- " + " ".join(shlex.quote(a) for a in args)
        return self.run(command, script.encode(), what=what, check=check, timeout=timeout)

    def write_file(self, path: str, data: bytes, *, mode: int, what: str) -> None:
        """Write `data` to `path` atomically (temp file, then rename), created with `mode`."""
        quoted, temp = shlex.quote(path), shlex.quote(f"{path}.new")
        umask = 0o777 & ~mode
        self.run(f"umask {umask:03o} && rm -f {temp} && cat > {temp} && "
                 f"chmod {mode:o} {temp} && mv -f {temp} {quoted}", data, what=what)
