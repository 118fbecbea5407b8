"""Who a child runs as and what it may hold: --user, --nofile, --env-file (issue 16).

Two halves. `identity_for` runs in the agent (blocking, before the fork): it
looks the user and group up, checks that user can read the bundle, and reads
the env file; every failure is a plain SpawnFailed naming what is wrong.
`apply` runs in the child between fork and exec (spawn.py's preexec), so it
only makes system calls on values worked out beforehand: no name service
look-ups (they take locks another thread of the agent may hold at the fork).

Order in the child: the rlimit first (raising it needs the agent's privilege),
then the supplementary groups and the group, and the user last, since after
setuid nothing else may be changed. The log files are written by the agent
through pipes, so they stay the agent's whatever the child becomes.

Readability is checked from the mode bits (owner, group, other; ACLs are not
read): the agent does not loosen directories it does not own, so a state dir
under a private directory (deploy's 0700) is refused with the directory named.
"""
from __future__ import annotations

import grp
import os
import pwd
import resource
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from lotc.errors import SpawnFailed

__all__ = ["Identity", "apply", "identity_for", "read_env_file"]

MAX_ENV_FILE = 1024 * 1024  # bytes; an env file is a few lines, not a data set


@dataclass(frozen=True)
class Identity:
    """What the child becomes before exec, and the variables that go with it."""

    nofile: int = 0  # RLIMIT_NOFILE (soft and hard); 0: unchanged
    uid: int | None = None  # None: the agent's user, groups unchanged
    gid: int = 0
    groups: tuple[int, ...] = ()
    env: dict[str, str] = field(default_factory=dict)  # HOME, USER, LOGNAME with a user

    @property
    def changes_child(self) -> bool:
        """False when the child needs no preexec (Popen may then use vfork)."""
        return bool(self.nofile) or self.uid is not None


def apply(identity: Identity) -> None:
    """In the child, between fork and exec: system calls only (see module doc)."""
    if identity.nofile:
        resource.setrlimit(resource.RLIMIT_NOFILE, (identity.nofile, identity.nofile))
    if identity.uid is not None:
        os.setgroups(list(identity.groups))
        os.setgid(identity.gid)
        os.setuid(identity.uid)


def _lookup_user(text: str) -> tuple[pwd.struct_passwd, int]:
    """'NAME[:GROUP]' -> (passwd entry, group id)."""
    name, _, group = text.partition(":")
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        raise SpawnFailed(f"--user {text}: no user {name!r} on this node") from None
    if not group:
        return entry, entry.pw_gid
    try:
        return entry, grp.getgrnam(group).gr_gid
    except KeyError:
        raise SpawnFailed(f"--user {text}: no group {group!r} on this node") from None


def _allowed(info: os.stat_result, uid: int, gids: frozenset[int], want: int) -> bool:
    """Do the mode bits give `want` (a mask of 4 read, 1 search/exec) to this user?"""
    if uid == 0:
        return True
    mode = stat.S_IMODE(info.st_mode)
    if info.st_uid == uid:
        bits = mode >> 6
    elif info.st_gid in gids:
        bits = mode >> 3
    else:
        bits = mode
    return bits & want == want


def _tree(root: Path) -> Iterator[tuple[Path, int]]:
    """Every entry of the bundle and the access it needs (links: their target's)."""
    if not root.is_dir():
        yield root, 4
        return
    yield root, 5
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames:
            yield Path(dirpath, name), 5
        for name in filenames:
            yield Path(dirpath, name), 4


def check_readable(bundle: Path, user: str, uid: int, gids: frozenset[int]) -> None:
    """The user must reach the bundle (search on every parent) and read all of it."""
    for parent in reversed(bundle.parents):
        if not _allowed(parent.stat(), uid, gids, 1):
            raise SpawnFailed(
                f"user {user} cannot reach the bundle: {parent} is not searchable by it "
                f"(mode {stat.S_IMODE(parent.stat().st_mode):04o}); allow it (chmod o+x, or "
                "a group of that user) or run the agent with a state dir it can reach")
    for path, want in _tree(bundle):
        try:
            info = path.stat()
        except OSError:
            continue  # a dangling link: the program's own affair
        if not _allowed(info, uid, gids, want):
            raise SpawnFailed(f"user {user} cannot read {path.relative_to(bundle.parent)} "
                                 f"of the bundle (mode {stat.S_IMODE(info.st_mode):04o})")


def _user_part(user: str, bundle: Path | None,
               ) -> tuple[int, int, tuple[int, ...], dict[str, str]]:
    if os.geteuid() != 0:
        raise SpawnFailed(f"--user {user}: this agent does not run as root "
                             f"(uid {os.geteuid()}), so it cannot run processes as another user")
    entry, gid = _lookup_user(user)
    groups = tuple(os.getgrouplist(entry.pw_name, gid))  # what initgroups() would set
    if bundle is not None:
        check_readable(bundle, user, entry.pw_uid, frozenset(groups))
    env = {"HOME": entry.pw_dir, "USER": entry.pw_name, "LOGNAME": entry.pw_name}
    return entry.pw_uid, gid, groups, env


def identity_for(nofile: int, user: str, bundle: Path | None) -> Identity:
    """The child's identity for these options. Blocking; SpawnFailed in plain words.
    `bundle` is what the user must be able to read (None: nothing, as for `exec`)."""
    if not user:
        return Identity(nofile=nofile)
    uid, gid, groups, env = _user_part(user, bundle)
    return Identity(nofile=nofile, uid=uid, gid=gid, groups=groups, env=env)


def _parse_line(where: str, line: str) -> tuple[str, str] | None:
    text = line.strip()
    if not text or text.startswith("#"):
        return None
    if text.startswith("export "):
        text = text[len("export "):].lstrip()
    key, sep, value = text.partition("=")
    key = key.strip()
    # The line itself is never quoted back: its value may be a secret.
    if not sep or not key or not (key.replace("_", "a").isalnum() and not key[0].isdigit()):
        raise SpawnFailed(f"{where}: not a KEY=VALUE line (KEY: letters, digits, _)")
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        value = value[1:-1]
    return key, value


def read_env_file(base: Path, relative: str) -> dict[str, str]:
    """The variables of `relative`, a file inside the bundle directory `base`. Blocking."""
    path = base / relative
    real, inside = os.path.realpath(path), os.path.realpath(base)
    if os.path.commonpath((real, inside)) != inside:
        raise SpawnFailed(f"--env-file {relative}: it leaves the bundle (through a link)")
    try:
        with open(real, "rb") as f:
            data = f.read(MAX_ENV_FILE + 1)
    except OSError as exc:
        raise SpawnFailed(f"--env-file {relative}: {exc.strerror}") from None
    if len(data) > MAX_ENV_FILE:
        raise SpawnFailed(f"--env-file {relative}: larger than {MAX_ENV_FILE} bytes")
    if b"\0" in data:
        raise SpawnFailed(f"--env-file {relative}: holds a NUL byte")
    try:
        text = data.decode()
    except UnicodeDecodeError:
        raise SpawnFailed(f"--env-file {relative}: not UTF-8 text") from None
    found: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        pair = _parse_line(f"{relative}:{number}", line)
        if pair is not None:
            found[pair[0]] = pair[1]
    return found
