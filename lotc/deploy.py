"""`lotc deploy`: put the single-file agent on a node over SSH, start it, see it online.

Theory of operation
-------------------
One deploy is a list of steps, each reported as it starts, each one SSH call:
probe the node (python3, systemd, what is installed), stop the running agent
(an upgrade: its processes keep running and are re-adopted), copy the agent
file, the token (0600, on stdin) and the start script, start it (a systemd
unit when the SSH user is root and systemd runs, else nohup with a pid file),
then ask the server's admin port until the agent is online on a connection
newer than the one it had before. Running it again is the upgrade path; the
node's token is kept unless a new one is given. `--uninstall` terminates the
agent's processes through the server (when an admin token is at hand), stops
the agent and removes everything deploy wrote.
"""
from __future__ import annotations

import json
import logging
import shlex
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from lotc.deploy_online import AdminAccess, agent_entry, terminate_all, wait_online
from lotc.deploy_remote import (
    LOG_TAIL,
    PROBE,
    REMOVE,
    START_NOHUP,
    START_SYSTEMD,
    STOP,
    UNIT_PATH,
    AgentSettings,
    conf_file,
    configure_script,
    parse_probe,
    run_script,
    systemd_unit,
)
from lotc.deploy_ssh import Remote, RemoteError
from lotc.errors import InvalidRequest
from lotc.pyz_bootstrap import MANIFEST, cache_entry
from protocol.messages import AgentEntry

logger = logging.getLogger(__name__)

MIN_PYTHON = (3, 11)
Report = Callable[[str], None]


@dataclass
class Deployment:
    remote: Remote
    directory: str  # on the node; relative paths are under the SSH user's home
    name: str = ""
    server: str = ""  # the agent port as the node reaches it
    agent_file: Path = Path("lotc-agent.pyz")
    token: str | None = None
    db: Path | None = None
    python: str = ""  # on the node; empty: python3 on the SSH user's PATH
    ntp: tuple[str, ...] = ()
    tls_ca: str | None = None
    labels: tuple[str, ...] = ()  # agent --label KEY=VALUE
    admin: AdminAccess | None = None
    online_timeout_s: float = 30.0
    report: Report = field(default=print)
    facts: dict[str, str] = field(default_factory=dict)

    # ------------------------------------------------------------------ steps

    def probe(self) -> dict[str, str]:
        self.report(f"checking {self.remote.target} (port {self.remote.port})")
        self.facts = parse_probe(self.remote.script(PROBE, self.directory, self.python,
                                                    what="probing the node"))
        return self.facts

    @property
    def mode(self) -> str:
        root = self.facts.get("uid") == "0"
        return "systemd" if root and self.facts.get("systemd") == "yes" else "nohup"

    def check_python(self) -> str:
        python, version = self.facts.get("python", ""), self.facts.get("python_version", "")
        if not python or not version:
            raise RemoteError(f"no python3 on {self.remote.target} (give --python PATH)")
        if tuple(int(p) for p in version.split(".")[:2]) < MIN_PYTHON:
            raise RemoteError(f"{python} on {self.remote.target} is Python {version}; "
                              f"the agent needs {'.'.join(map(str, MIN_PYTHON))} or newer")
        return f"Python {version} at {python}"

    def stop_running(self) -> None:
        mode = self.facts.get("conf_mode", "")
        if not mode:
            return
        self.report(f"stopping the installed agent ({mode}); its processes keep running")
        self.remote.script(STOP, self.facts["dir"], mode, what="stopping the agent")

    def resolve_token(self) -> str | None:
        """The token to write, or None to keep the node's (an upgrade without a new one)."""
        if self.token:
            return self.token
        if self.facts.get("has_token") == "yes" and self.facts.get("conf_name") == self.name:
            self.report("keeping the token already on the node")
            return None
        if self.db is None:
            raise InvalidRequest("no token for the agent: give --token, --token-file, or "
                                 "--db (the server's database) to create one")
        from lotc.server.model import Model  # only here: deploy without --db needs no server code
        from protocol.enums import Role

        model = Model(self.db)
        try:
            token = model.create_token(Role.AGENT, self.name, time.time_ns() // 1000)
        finally:
            model.close()
        self.report(f"created a token for agent {self.name!r} in {self.db}")
        return token

    def upload(self) -> None:
        directory = self.facts["dir"]
        quoted = shlex.quote(directory)
        pyz = shlex.quote(f"{directory}/lotc-agent.pyz")
        size = self.agent_file.stat().st_size
        self.report(f"copying {self.agent_file} ({size / 1e6:.1f} MB) to {directory}")
        # Payloads extracted by older agent files are dead weight; this file's is kept.
        keep = shlex.quote(cache_entry(agent_manifest(self.agent_file)))
        self.remote.run(f"mkdir -p {quoted} && chmod 700 {quoted} && "
                        f"cat > {pyz}.new && chmod 755 {pyz}.new && mv -f {pyz}.new {pyz} && "
                        f"mkdir -p {quoted}/cache && find {quoted}/cache -mindepth 1 -maxdepth 1 "
                        f"! -name {keep} -exec rm -rf {{}} +",
                        self.agent_file.read_bytes(), what="copying the agent file")

    def configure_and_start(self, token: str | None) -> None:
        """Token, start script, config (and unit), then start: one SSH call."""
        directory = self.facts["dir"]
        settings = AgentSettings(self.name, self.server, self.facts["python"], self.ntp,
                                 self.tls_ca, self.labels)
        files: dict[str, tuple[int, str]] = {}
        if token is not None:
            self.report(f"writing the token to {directory}/token (mode 0600)")
            files[f"{directory}/token"] = (0o600, token)
        self.report(f"writing {directory}/run and {directory}/agent.conf")
        files[f"{directory}/run"] = (0o755, run_script(settings))
        files[f"{directory}/agent.conf"] = (0o644, conf_file(settings, self.mode))
        if self.mode == "systemd":
            self.report(f"installing and starting the systemd unit {UNIT_PATH}")
            files[UNIT_PATH] = (0o644, systemd_unit(directory))
            start = START_SYSTEMD
        else:
            why = "systemd is not running there" if self.facts.get("systemd") != "yes" \
                else "a systemd unit needs root"
            self.report(f"starting with nohup ({why}): pid in {directory}/agent.pid, log in "
                        f"{directory}/agent.log; it will NOT start again after a reboot")
            start = START_NOHUP
        self.remote.script(configure_script(directory, files, start),
                           what="configuring and starting the agent")

    def log_tail(self) -> str:
        return self.remote.script(LOG_TAIL, self.facts["dir"], self.mode, check=False,
                                  what="reading the agent's log")


def agent_manifest(agent_file: Path) -> dict[str, str]:
    """The build manifest inside an agent file; InvalidRequest when it is not one."""
    try:
        with zipfile.ZipFile(agent_file) as archive:
            return dict(json.loads(archive.read(MANIFEST)))
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as exc:
        raise InvalidRequest(f"{agent_file} is not an agent file from `lotc build-agent`: "
                             f"{exc}") from None


def deploy(d: Deployment) -> AgentEntry | None:
    """Install or upgrade; the agent's entry once online (None when there is no admin token)."""
    if not d.agent_file.is_file():
        raise InvalidRequest(f"no agent file {d.agent_file}: build it with "
                             f"`lotc build-agent -o {d.agent_file}`")
    agent_manifest(d.agent_file)
    d.probe()
    d.report(f"node: {d.facts.get('platform', '?')}, {d.check_python()}, "
             f"{'upgrade of' if d.facts.get('conf_mode') else 'new install in'} {d.facts['dir']}")
    token = d.resolve_token()
    before = agent_entry(d.admin, d.name) if d.admin else None
    d.stop_running()
    d.upload()
    d.configure_and_start(token)
    if d.admin is None:
        d.report("not waiting for the agent to come online: no admin token "
                 "(give --admin-token or set LOTC_TOKEN)")
        return None
    d.report(f"waiting up to {d.online_timeout_s:g} s for {d.name!r} to come online at "
             f"{d.admin.address_text}")
    try:
        entry = wait_online(d.admin, d.name, before.connected_us if before else None,
                            d.online_timeout_s)
    except RemoteError as exc:
        raise RemoteError(f"{exc}\nthe agent's log on the node:\n{d.log_tail()}") from None
    d.report(f"{d.name} is online from {entry.address} ({entry.version})")
    return entry


def uninstall(d: Deployment) -> None:
    facts = d.probe()
    mode, name = facts.get("conf_mode", ""), facts.get("conf_name", "")
    if not mode:
        d.report(f"nothing installed in {facts['dir']}")
        return
    if d.admin is not None and name:
        count = terminate_all(d.admin, name)
        d.report(f"terminated {count} process(es) of {name!r} through the server")
    elif name:
        d.report(f"processes of {name!r} keep running: no admin token to terminate them with")
    d.stop_running()
    d.report(f"removing {facts['dir']}" + (f" and {UNIT_PATH}" if mode == "systemd" else ""))
    d.remote.script(REMOVE, facts["dir"], mode, what="removing the agent")
    if name:
        d.report(f"the server still knows {name!r}: revoke its token with "
                 f"`lotc token revoke {name} --db DB`")
