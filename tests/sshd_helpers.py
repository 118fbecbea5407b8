"""A throwaway OpenSSH server on loopback, for testing `lotc deploy` for real.

`sshd -D -e -f CONFIG` on a free 127.0.0.1 port, with a host key and a
client key made for the test, logging in as the current user with that key
only. The client side is a list of `-o` options (known_hosts holding just
the throwaway host key, strict checking on) for `lotc deploy -o ...`.
`sshd_or_skip()` says plainly why a test cannot run (no sshd binary, no
ssh-keygen, a non-root user without a usable privilege-separation dir...).
"""
from __future__ import annotations

import getpass
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.cluster import free_port, port_open, wait_until

SSHD_CANDIDATES = ("/usr/sbin/sshd", "/usr/local/sbin/sshd")
PRIVSEP_DIR = Path("/run/sshd")  # Debian's sshd refuses to start without it (as root)
START_TIMEOUT_S = 10.0
INSTALL_HINT = "run `make test` (tests/install_sshd.sh installs openssh-server as root)"


def find_sshd() -> str | None:
    found = shutil.which("sshd")
    if found:
        return found
    return next((c for c in SSHD_CANDIDATES if os.access(c, os.X_OK)), None)


def sshd_or_skip() -> str:
    sshd = find_sshd()
    if sshd is None:
        pytest.skip(f"no OpenSSH server (sshd) on this machine: {INSTALL_HINT}")
    for tool in ("ssh", "ssh-keygen"):
        if shutil.which(tool) is None:
            pytest.skip(f"no `{tool}` client on this machine (install openssh-client)")
    if os.geteuid() == 0 and not PRIVSEP_DIR.is_dir():
        try:
            PRIVSEP_DIR.mkdir(mode=0o755)
        except OSError as exc:
            pytest.skip(f"sshd needs {PRIVSEP_DIR}, which cannot be made: {exc}")
    return sshd


@dataclass
class Sshd:
    root: Path
    port: int
    user: str
    client_key: Path
    known_hosts: Path
    process: subprocess.Popen[bytes]

    @property
    def target(self) -> str:
        return f"{self.user}@127.0.0.1"

    def client_options(self) -> list[str]:
        """`lotc deploy` arguments that reach this server and nothing else."""
        options = [f"UserKnownHostsFile={self.known_hosts}", "StrictHostKeyChecking=yes",
                   "GlobalKnownHostsFile=/dev/null", "LogLevel=ERROR"]
        return ["--port", str(self.port), "--identity", str(self.client_key),
                *[arg for option in options for arg in ("-o", option)]]

    def log(self) -> str:
        return (self.root / "sshd.log").read_text(errors="replace")


def keygen(path: Path) -> str:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "lotc-test",
                    "-f", str(path)], check=True, capture_output=True, timeout=START_TIMEOUT_S)
    return path.with_suffix(".pub").read_text().strip()


def write_config(root: Path, port: int, user: str) -> Path:
    config = root / "sshd_config"
    config.write_text(
        f"Port {port}\nListenAddress 127.0.0.1\n"
        f"HostKey {root / 'host_key'}\nPidFile {root / 'sshd.pid'}\n"
        f"AuthorizedKeysFile {root / 'authorized_keys'}\n"
        "StrictModes no\nUsePAM no\nPasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\nPubkeyAuthentication yes\n"
        "PermitRootLogin prohibit-password\n"
        f"AllowUsers {user}\nLogLevel VERBOSE\nMaxStartups 50\n"
    )
    return config


def start_sshd(root: Path) -> Iterator[Sshd]:
    """Generator for a fixture: yields a running Sshd and always stops it."""
    sshd = sshd_or_skip()
    root.mkdir(parents=True, exist_ok=True)
    root.chmod(0o755)
    user = getpass.getuser()
    host_public = keygen(root / "host_key")
    (root / "authorized_keys").write_text(keygen(root / "client_key") + "\n")
    port = free_port()
    known_hosts = root / "known_hosts"
    known_hosts.write_text(f"[127.0.0.1]:{port} {host_public}\n")
    config = write_config(root, port, user)
    log = (root / "sshd.log").open("ab")
    process = subprocess.Popen([sshd, "-D", "-e", "-f", str(config)], stdout=log, stderr=log,
                               stdin=subprocess.DEVNULL)
    server = Sshd(root, port, user, root / "client_key", known_hosts, process)
    try:
        wait_until(lambda: process.poll() is not None or port_open("127.0.0.1", port),
                   START_TIMEOUT_S, what="sshd listening")
        if process.poll() is not None:
            pytest.skip(f"sshd would not start here: {server.log()[-500:]}")
        yield server
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=START_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def wait_gone(pid: int, timeout: float = START_TIMEOUT_S) -> None:
    def gone() -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        return _is_zombie(pid)
    wait_until(gone, timeout, what=f"pid {pid} gone")


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].startswith("Z")
    except (OSError, IndexError):
        return True

