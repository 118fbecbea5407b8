"""The REPL's side that talks to the server: connection, commands, events, state.

Theory of operation
-------------------
A Session is the trio half of the REPL (repl.py explains how trio and
prompt_toolkit's asyncio share one thread). `run` holds two things open:

* the link loop: connect, then while connected keep a background `events -f`
  subscription (events worth the user's attention are printed above the
  prompt) and a refresher of the `ServerState` snapshot used by completion and
  the toolbar (on connect, soon after every command or event, and every
  REFRESH_INTERVAL_S); when the connection ends, say so and reconnect with
  exponential backoff. A command typed while disconnected fails at once with
  "not connected" and cuts the current backoff short.
* commands: `submit` (called from the asyncio side through the trio token)
  runs one typed line's invocations in order, each in its own cancel scope so
  Ctrl-C (`interrupt`) can end it without touching the connection: a follow
  stream (`logs -f`, `events -f`) is waiting in `ctx.interrupted` and ends
  politely with CANCEL; anything else is cancelled outright.

Everything here runs on the asyncio thread in trio's guest mode, so the
`changed` callback may poke prompt_toolkit directly.
"""
from __future__ import annotations

import enum
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TextIO

import trio

from admin_console.client import AdminClient
from admin_console.commands.base import Command, Context
from admin_console.commands.streams import event_text
from admin_console.errors import ConnectionLost, ConsoleError
from admin_console.live_state import ServerState, fetch_state
from admin_console.registry import Invocation, Outcome, Registry, run_invocation
from admin_console.script import CONNECT_ERRORS, Connection, describe_connect_error
from lotc.errors import LotcError
from lotc.exc_groups import lone_error
from protocol.codec import Frame
from protocol.enums import EventKind, ProcessState
from protocol.messages import Event, QueryEvents

logger = logging.getLogger(__name__)

BACKOFF_FIRST_S = 0.25
BACKOFF_MAX_S = 5.0
REFRESH_INTERVAL_S = 5.0
# after a command or an event, wait this long so a burst of events costs one refresh
REFRESH_COALESCE_S = 0.1
# events stored while the console was away, shown when it reconnects
MISSED_EVENTS_SHOWN = 50

NOTABLE_KINDS = {EventKind.AGENT_ONLINE, EventKind.AGENT_OFFLINE, EventKind.LIVENESS_MISSED,
                 EventKind.SCHEDULE_FIRED, EventKind.SCHEDULE_MISSED, EventKind.ERROR}
ENDED_STATES = {ProcessState.EXITED, ProcessState.FAILED, ProcessState.BACKOFF}


class LinkState(enum.Enum):
    CONNECTING = "connecting"
    CONNECTED = "connected"
    DISCONNECTED = "not connected"
    REFUSED = "refused"  # the first attempt was turned away (bad token): give up


@dataclass(frozen=True)
class Link:
    state: LinkState = LinkState.CONNECTING
    reason: str = ""  # why not connected, in plain words
    retry_at: float | None = None  # time.monotonic() of the next attempt
    attempts: int = 0  # since the last successful connection


def notable(event: Event) -> bool:
    """Events printed above the prompt: what needs the operator's attention."""
    if event.kind in NOTABLE_KINDS:
        return True
    return event.kind == EventKind.PROCESS_STATE and event.new_state in ENDED_STATES


class Session:
    def __init__(self, connection: Connection, registry: Registry, *, out: TextIO, err: TextIO,
                 progress: bool, changed: Callable[[], None]) -> None:
        self.connection = connection
        self.ctx = Context(None, registry, out=out, err=err, progress=progress,
                           interrupted=self._wait_interrupt)
        self.changed = changed  # called whenever `link` or `state` changes
        self.state = ServerState()
        self.link = Link()
        self.first_attempt_over = False
        self.token: trio.lowlevel.TrioToken | None = None
        self._nursery: trio.Nursery | None = None
        self._events_since = time.time_ns() // 1000
        self._refresh_wanted = trio.Event()
        self._retry_now = trio.Event()
        self._running: Command | None = None
        self._scope: trio.CancelScope | None = None
        self._interrupt = trio.Event()
        self._waiting_interrupt = 0

    @property
    def where(self) -> str:
        return f"{self.connection.address}"

    # ------------------------------------------------------------ entry points

    async def run(self) -> None:
        """Until `stop`: keep the link up and run what is submitted."""
        self.token = trio.lowlevel.current_trio_token()
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            nursery.start_soon(self._link_loop)
            self.changed()

    def stop(self) -> None:
        if self._nursery is not None:
            self._nursery.cancel_scope.cancel()

    def submit(self, invocations: Sequence[Invocation], done: Callable[[Outcome], None]) -> None:
        """Run the invocations of one typed line in order; `done` gets the last outcome."""
        assert self._nursery is not None
        self._nursery.start_soon(self._run_line, invocations, done)

    def interrupt(self) -> None:
        """Ctrl-C while a command runs: end a follow stream politely, anything else at once."""
        if self._scope is None:
            return
        if self._waiting_interrupt and not self._interrupt.is_set():
            self._interrupt.set()
        else:  # a second Ctrl-C, or a command that does not listen for it
            self._scope.cancel()

    # ------------------------------------------------------------ commands

    async def _run_line(self, invocations: Sequence[Invocation],
                        done: Callable[[Outcome], None]) -> None:
        outcome = Outcome.OK
        try:
            for invocation in invocations:
                outcome = await self._run_one(invocation)
                if outcome is not Outcome.OK:
                    break
        finally:
            done(outcome)

    async def _run_one(self, invocation: Invocation) -> Outcome:
        command = invocation.command
        if command.needs_server and not self.connected:
            self.say_error(self.not_connected_text())
            self._retry_now.set()
            return Outcome.FAILED
        self._interrupt = trio.Event()
        self._running = command
        try:
            with trio.CancelScope() as scope:
                self._scope = scope
                try:
                    return await run_invocation(self.ctx, invocation)
                except (LotcError, ConsoleError) as exc:
                    self.say_error(str(exc))
                    return Outcome.FAILED
                except BaseExceptionGroup as group:  # from a command's own nursery
                    error = lone_error(group)
                    if not isinstance(error, (LotcError, ConsoleError)):
                        raise
                    self.say_error(str(error))
                    return Outcome.FAILED
            self.say("interrupted")
            return Outcome.FAILED
        finally:
            self._scope = None
            self._running = None
            if command.needs_server:
                self.want_refresh()

    async def _wait_interrupt(self) -> None:
        self._waiting_interrupt += 1
        try:
            await self._interrupt.wait()
        finally:
            self._waiting_interrupt -= 1

    @property
    def connected(self) -> bool:
        client = self.ctx.client
        return self.link.state is LinkState.CONNECTED and client is not None and client.connected

    def not_connected_text(self) -> str:
        reason = f" ({self.link.reason})" if self.link.reason else ""
        return (f"not connected to {self.where}{reason}; reconnecting in the background, "
                "try again in a moment")

    # ------------------------------------------------------------ output

    def say(self, text: str) -> None:
        print(text, file=self.ctx.out, flush=True)

    def say_error(self, text: str) -> None:
        print(f"error: {text}", file=self.ctx.err, flush=True)

    def _set_link(self, link: Link) -> None:
        self.link = link
        self.changed()

    def want_refresh(self) -> None:
        self._refresh_wanted.set()

    # ------------------------------------------------------------ the link

    async def _link_loop(self) -> None:
        delay = BACKOFF_FIRST_S
        attempts = 0
        while True:
            attempts += 1
            self._set_link(replace(self.link, state=LinkState.CONNECTING, attempts=attempts))
            was_connected, reason, refused = await self._connect_once()
            if was_connected:
                delay, attempts = BACKOFF_FIRST_S, 0
                self.say(f"connection to {self.where} lost: {reason}; reconnecting")
            elif refused and not self.first_attempt_over:
                self.first_attempt_over = True
                self._set_link(Link(LinkState.REFUSED, reason))
                return
            elif attempts == 1:
                self.say(f"cannot connect to {self.where}: {reason}; retrying in the background")
            self.first_attempt_over = True
            self._set_link(Link(LinkState.DISCONNECTED, reason, time.monotonic() + delay,
                                attempts))
            self._retry_now = trio.Event()
            with trio.move_on_after(delay):
                await self._retry_now.wait()
            delay = min(delay * 2, BACKOFF_MAX_S)

    async def _connect_once(self) -> tuple[bool, str, bool]:
        """One connection, used until it ends: (was it up, why it ended, refused?)."""
        c = self.connection
        entered = False
        try:
            async with AdminClient.connect(c.address, token=c.token, name=c.name,
                                           ssl_context=c.ssl_context,
                                           on_unsolicited=self._on_unsolicited) as client:
                entered = True
                reason = await self._while_connected(client)
        except CONNECT_ERRORS as exc:
            if entered:
                raise
            return False, describe_connect_error(exc), isinstance(exc, LotcError)
        return True, reason, False

    async def _while_connected(self, client: AdminClient) -> str:
        again = self.first_attempt_over
        self.ctx.client = client
        self.first_attempt_over = True
        self._set_link(Link(LinkState.CONNECTED))
        server = f" (server {client.welcome.server})" if client.welcome.server else ""
        self.say(f"{'reconnected' if again else 'connected'} to {self.where} as "
                 f"{self.connection.name}{server}")
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._follow_events, client)
            nursery.start_soon(self._refresh_loop, client)
            reason = await client.wait_lost()
            nursery.cancel_scope.cancel()
        return reason

    async def _refresh_loop(self, client: AdminClient) -> None:
        schedules = "schedules" in self.ctx.registry.names()
        labels = "label" in self.ctx.registry.names()
        while True:
            self._refresh_wanted = trio.Event()
            try:
                self.state = await fetch_state(client, self.state, schedules=schedules,
                                               labels=labels)
            except ConnectionLost:
                return  # the link loop reports it
            self.changed()
            with trio.move_on_after(REFRESH_INTERVAL_S):
                await self._refresh_wanted.wait()
            await trio.sleep(REFRESH_COALESCE_S)

    async def _follow_events(self, client: AdminClient) -> None:
        body = QueryEvents(pattern="", since_us=self._events_since, limit=MISSED_EVENTS_SHOWN,
                           follow=True)
        try:
            async with client.stream(body, follow=True) as reply:
                async for frame in reply:
                    if isinstance(frame.body, Event):
                        self._on_event(frame.body)
        except ConnectionLost:
            return
        except LotcError as exc:  # the server will not stream events: live without them
            logger.debug("no event subscription: %s", exc)

    def _on_event(self, event: Event) -> None:
        self._events_since = max(self._events_since, event.time_us + 1)
        self.want_refresh()
        following = self._running is not None and self._running.name == "events"
        if notable(event) and not following:  # `events -f` prints them itself
            self.say(event_text(event))

    def _on_unsolicited(self, frame: Frame) -> None:
        if isinstance(frame.body, Event):
            self._on_event(frame.body)
