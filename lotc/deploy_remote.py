"""What `lotc deploy` runs and writes on the node: POSIX sh scripts and small files.

Layout of an installation (DIR defaults to ~/lotc-agent of the SSH user):
  DIR/lotc-agent.pyz   the single-file agent
  DIR/token            the agent's token, mode 0600 (read with --token-file)
  DIR/agent.conf       name=, server=, mode= (systemd|nohup): what deploy installed
  DIR/run              the start script: exec python3 lotc-agent.pyz --server ... --name ...
  DIR/state/           bundles, logs and process state of the agent
  DIR/cache/           the agent file's extracted payload (LOTC_AGENT_CACHE)
  DIR/agent.pid, DIR/agent.log   nohup mode only
  /etc/systemd/system/lotc-agent.service   systemd mode only (root, systemd running)
"""
from __future__ import annotations

import hashlib
import shlex
from collections.abc import Sequence
from dataclasses import dataclass

UNIT_NAME = "lotc-agent.service"
UNIT_PATH = f"/etc/systemd/system/{UNIT_NAME}"
STOP_WAIT_S = 15  # SIGTERM, then this long before SIGKILL (the agent stops in well under 1 s)

# $1 = DIR. Prints key=value lines; resolves DIR against $HOME when relative.
PROBE = r"""
dir=$1; case $dir in /*) ;; *) dir=$HOME/$dir ;; esac
echo "dir=$dir"
echo "uid=$(id -u)"
echo "platform=$(uname -sm)"
py=${2:-$(command -v python3 || true)}
echo "python=$py"
if [ -n "$py" ]; then echo "python_version=$("$py" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])' 2>/dev/null)"; fi
if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then echo systemd=yes; else echo systemd=no; fi
[ -f "$dir/token" ] && echo has_token=yes
if [ -f "$dir/agent.conf" ]; then sed 's/^/conf_/' "$dir/agent.conf"; fi
if [ -f "$dir/agent.pid" ] && kill -0 "$(cat "$dir/agent.pid")" 2>/dev/null; then echo "running_pid=$(cat "$dir/agent.pid")"; fi
"""

# $1 = DIR, $2 = mode. Stops the agent; its processes keep running (it re-adopts them).
STOP = rf"""
dir=$1
if [ "$2" = systemd ]; then
    systemctl stop {UNIT_NAME} 2>/dev/null || true
    exit 0
fi
[ -f "$dir/agent.pid" ] || exit 0
pid=$(cat "$dir/agent.pid")
kill "$pid" 2>/dev/null || {{ rm -f "$dir/agent.pid"; exit 0; }}
i=0
while kill -0 "$pid" 2>/dev/null; do
    i=$((i + 1))
    if [ $i -gt {STOP_WAIT_S * 10} ]; then kill -9 "$pid" 2>/dev/null; break; fi
    sleep 0.1
done
rm -f "$dir/agent.pid"
"""

# $1 = DIR. Detached from the SSH session (setsid when there is one), pid kept for stop.
START_NOHUP = r"""
set +e
dir=$1; cd "$dir" || exit 1
if command -v setsid >/dev/null 2>&1; then detach=setsid; else detach=; fi
nohup $detach ./run >> agent.log 2>&1 < /dev/null &
echo $! > agent.pid
sleep 0.5
kill -0 "$(cat agent.pid)" 2>/dev/null || { echo "the agent exited at once:" >&2; tail -n 20 agent.log >&2; exit 1; }
"""

START_SYSTEMD = f"""
set +e
systemctl daemon-reload && systemctl enable {UNIT_NAME} >/dev/null 2>&1 && systemctl restart {UNIT_NAME}
"""

# $1 = DIR, $2 = mode.
REMOVE = rf"""
dir=$1
if [ "$2" = systemd ]; then
    systemctl disable --now {UNIT_NAME} >/dev/null 2>&1 || true
    rm -f {UNIT_PATH} && systemctl daemon-reload
fi
rm -rf "$dir"
"""

LOG_TAIL = rf"""
if [ "$2" = systemd ]; then journalctl -u {UNIT_NAME} -n 20 --no-pager 2>&1; else tail -n 20 "$1/agent.log" 2>&1; fi
"""


def write_file_sh(path: str, content: str, mode: int) -> str:
    """sh lines writing `content` to `path` atomically with `mode`, from a here-document.

    The script travels on ssh's stdin, so contents (the token) never reach a command line.
    """
    delimiter = "LOTC_EOF_" + hashlib.sha256(content.encode()).hexdigest()[:16]
    temp, final = shlex.quote(f"{path}.new"), shlex.quote(path)
    body = content if content.endswith("\n") else content + "\n"
    return (f"rm -f {temp}\n"
            f"(umask {0o777 & ~mode:03o}; cat > {temp}) <<'{delimiter}'\n{body}{delimiter}\n"
            f"chmod {mode:o} {temp}\nmv -f {temp} {final}\n")


def configure_script(directory: str, files: dict[str, tuple[int, str]], start: str) -> str:
    """One script: write `files` (absolute path -> (mode, content)), then run `start` with $1=DIR."""
    lines = ["set -e", f"set -- {shlex.quote(directory)}"]
    lines += [write_file_sh(path, content, mode) for path, (mode, content) in files.items()]
    return "\n".join(lines) + start


@dataclass(frozen=True)
class AgentSettings:
    name: str
    server: str
    python: str
    ntp: Sequence[str] = ()
    tls_ca: str | None = None  # path on the node
    labels: Sequence[str] = ()  # agent --label KEY=VALUE, checked by lotc.selectors


def run_script(settings: AgentSettings) -> str:
    """DIR/run: the one place the agent's command line lives (systemd and nohup share it)."""
    argv = [settings.python, "./lotc-agent.pyz", "--server", settings.server,
            "--name", settings.name]
    for host in settings.ntp:
        argv += ["--ntp", host]
    if settings.tls_ca:
        argv += ["--tls-ca", settings.tls_ca]
    for label in settings.labels:
        argv += ["--label", label]
    command = " ".join(shlex.quote(a) for a in argv)
    return ("#!/bin/sh\n"
            "# Written by `lotc deploy`; re-run it to change this (an upgrade rewrites it).\n"
            'cd "$(dirname "$0")" || exit 1\n'
            'LOTC_AGENT_CACHE="$PWD/cache"; export LOTC_AGENT_CACHE\n'
            f'exec {command} --token-file "$PWD/token" --state-dir "$PWD/state"\n')


def conf_file(settings: AgentSettings, mode: str) -> str:
    return f"name={settings.name}\nserver={settings.server}\nmode={mode}\n"


def systemd_unit(directory: str) -> str:
    # KillMode=process: stopping or upgrading the agent must not kill the processes
    # it manages; they live in their own sessions and the next agent re-adopts them.
    # Delegate=yes: the unit's cgroup subtree is the agent's to divide, one cgroup per
    # process (lotc/agent/cgroup_layout.py), with the memory, pids and cpu controllers.
    return f"""[Unit]
Description=LOTC agent (installed by lotc deploy)
After=network-online.target
Wants=network-online.target

[Service]
ExecStart={directory}/run
Restart=always
RestartSec=2
KillMode=process
Delegate=yes

[Install]
WantedBy=multi-user.target
"""


def parse_probe(output: str) -> dict[str, str]:
    facts = {}
    for line in output.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            facts[key.strip()] = value.strip()
    return facts
