"""Tab completion for the REPL: commands, options, and names from the live server.

`suggest(registry, state, text)` is the whole logic and pure: the words typed
so far (after the last ';'), the command's own argparse definition (which
options take a value, their choices) and its `arguments` (the kind of each
positional word: agent, bundle, process...) decide what may come next.
Names come from the `ServerState` snapshot the session keeps fresh in the
background, so completing never waits for the server. A process or bundle
is completed among those on the agents the AGENT word (a selector,
lotc/selectors.py, matched against the snapshot's labels) typed before it designates.
"""
from __future__ import annotations

import argparse
import os
import signal
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from prompt_toolkit.buffer import CompletionState
from prompt_toolkit.completion import CompleteEvent, Completer, Completion
from prompt_toolkit.completion.base import get_common_complete_suffix
from prompt_toolkit.document import Document
from prompt_toolkit.enums import DEFAULT_BUFFER
from prompt_toolkit.filters import has_focus
from prompt_toolkit.key_binding import KeyBindings, KeyPressEvent

from admin_console.commands.base import Command
from admin_console.errors import UsageError
from admin_console.live_state import ServerState
from admin_console.parsing import last_command, scan
from admin_console.registry import Registry
from lotc.errors import InvalidRequest
from lotc.names import ALL
from lotc.selectors import parse_selector

ALL_AGENTS = ALL
REPEATED_KINDS = ("label", "label-key")
ACTIONS = ("start", "stop", "resume", "terminate", "kill", "restart")
SIGNALS = tuple(sorted(s.name[3:] for s in signal.Signals if not s.name.startswith("SIG_")))


@dataclass(frozen=True)
class Suggestion:
    text: str  # what replaces the word being typed
    start: int  # where it starts, relative to the cursor (<= 0)
    meta: str = ""


@dataclass(frozen=True)
class Typed:
    """The command being typed: finished words and the partial one at the cursor."""

    words: list[str]
    current: str  # unquoted value of the partial word ("" after a space)
    raw_length: int  # characters of the partial word as typed, quotes included


def typed(text: str) -> Typed:
    """Split what is before the cursor like the shell would, tolerating an open quote."""
    command = last_command(text)
    scanned = scan(command)
    if scanned.last_start is None:  # the cursor is after a blank: a new word starts
        return Typed(scanned.words, "", 0)
    return Typed(scanned.words[:-1], scanned.words[-1], len(command) - scanned.last_start)


def suggest(registry: Registry, state: ServerState, text: str) -> list[Suggestion]:
    """What may replace the partial word at the end of `text`."""
    line = typed(text)
    if not line.words:
        return _matching(line, ((c.name, c.summary) for c in registry))
    try:
        command = registry.get(line.words[0])
    except UsageError:  # an unknown command: nothing to offer
        return []
    parser, args = _effective_parser(command, line.words[1:])
    options = _options(parser)
    positionals, pending_option, after_dashes = _walk(args, options)
    if after_dashes:
        return []  # the program's own command line
    if pending_option is not None:
        return _matching(line, _option_values(options[pending_option], state))
    if line.current.startswith("-"):
        used = set(args)
        return _matching(line, ((o, "") for o, action in options.items()
                                if o not in used or isinstance(action, argparse._AppendAction)))
    kinds = command.arguments
    kind = kinds[len(positionals)] if len(positionals) < len(kinds) else None
    if kind is None and kinds and kinds[-1] in REPEATED_KINDS:
        kind = kinds[-1]  # `label AGENT K=V K=V...`: the last kind repeats
    agent_word = positionals[kinds.index("agent")] if "agent" in kinds[:len(positionals)] \
        else None
    if kind == "path":
        return _paths(line)
    if kind == "word":
        return _matching(line, ((c, "") for c in _word_choices(parser, len(positionals))))
    return _matching(line, _names(kind, state, registry, agent_word))


def _matching(line: Typed, offers: Iterable[tuple[str, str]]) -> list[Suggestion]:
    seen: set[str] = set()
    found = []
    for text, meta in offers:
        if text.startswith(line.current) and text not in seen:
            seen.add(text)
            found.append(Suggestion(text, -line.raw_length, meta))
    return found


def _word_choices(parser: argparse.ArgumentParser, index: int) -> list[str]:
    """A subcommand (`token create`), or the fixed choices of the positional at `index`."""
    positionals = [a for a in parser._actions if not a.option_strings]
    if index >= len(positionals):
        return []
    return [str(choice) for choice in positionals[index].choices or ()]


def _effective_parser(command: Command, args: list[str]
                      ) -> tuple[argparse.ArgumentParser, list[str]]:
    """`token create ...`: the options are the subcommand's."""
    parser: argparse.ArgumentParser = command.parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction) and args and args[0] in action.choices:
            return action.choices[args[0]], args[1:]
    return parser, args


def _options(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    return {o: action for action in parser._actions for o in action.option_strings}


def _walk(args: list[str], options: dict[str, argparse.Action]
          ) -> tuple[list[str], str | None, bool]:
    """Positional words so far, the option still waiting for its value, and whether '--' passed."""
    positionals: list[str] = []
    pending: str | None = None
    for word in args:
        if pending is not None:
            pending = None
        elif word == "--":
            return positionals, None, True
        elif word in options:
            pending = word if options[word].nargs != 0 else None
        elif not word.startswith("-"):
            positionals.append(word)
    return positionals, pending, False


def _option_values(action: argparse.Action, state: ServerState) -> Iterator[tuple[str, str]]:
    if action.choices:
        yield from ((str(c), "") for c in action.choices)
    elif action.dest == "signal":
        yield from ((name, "") for name in SIGNALS)
    elif action.dest in ("tz", "zone"):
        yield from ((zone, "") for zone in _zones())


def _names(kind: str | None, state: ServerState, registry: Registry,
           agent_word: str | None) -> Iterator[tuple[str, str]]:
    on_agent = _agent_filter(agent_word, state)
    if kind == "agent":
        yield from ((a.name, "online" if a.online else "offline") for a in state.agents)
        yield ALL_AGENTS, "every agent"
        terms = sorted({f"{k}={v}" for entry in state.labels for k, v in entry.labels})
        yield from ((term, "label") for term in terms)
    elif kind == "label":  # keys the chosen agents have, to change their value
        yield from ((f"{k}=", f"now {v}") for entry in state.labels if on_agent(entry.agent)
                    for k, v in entry.labels)
    elif kind == "label-key":  # what unlabel can remove: the console's labels
        yield from ((k, "set from the console") for entry in state.labels
                    if on_agent(entry.agent) for k in entry.console_keys)
    elif kind == "command":
        yield from ((c.name, c.summary) for c in registry)
    elif kind == "process":
        yield from ((p.name, f"{p.agent}: {p.state}") for p in state.processes
                    if on_agent(p.agent))
    elif kind == "bundle":
        yield from ((b.name, f"on {b.agent}") for b in state.bundles if on_agent(b.agent))
    elif kind == "schedule":
        yield from ((str(s.id), f"{s.agent} {s.process} {s.action}") for s in state.schedules
                    if on_agent(s.agent))
    elif kind == "action":
        yield from ((a, "") for a in ACTIONS)
    elif kind == "when":
        yield from (("cron", 'repeat: cron "EXPR" [--tz ZONE]'), ("at", "once: at TIME or +DELAY"))
    elif kind == "signal":
        yield from ((name, "") for name in SIGNALS)


def _agent_filter(agent_word: str | None, state: ServerState) -> Callable[[str], bool]:
    """Whether an agent is among those the AGENT word typed designates (the same selector
    rules as the server's, lotc/selectors.py, on the snapshot's labels)."""
    if agent_word is None or agent_word in ("", ALL_AGENTS):
        return lambda agent: True
    try:
        selector = parse_selector(agent_word)
    except InvalidRequest:  # not a selector (yet): nothing matches
        return lambda agent: False
    labels = {entry.agent: dict(entry.labels) for entry in state.labels}
    return lambda agent: selector.matches(agent, labels.get(agent))


def _paths(line: Typed) -> list[Suggestion]:
    """Files and directories for PATH words (a directory gets a trailing '/')."""
    folder, prefix = os.path.split(line.current)
    try:
        names = sorted(os.listdir(os.path.expanduser(folder) or "."))
    except OSError:
        return []
    found = []
    for name in names:
        if name.startswith(prefix) and (prefix.startswith(".") or not name.startswith(".")):
            path = os.path.join(folder, name)
            is_dir = os.path.isdir(os.path.expanduser(path))
            found.append(Suggestion(path + ("/" if is_dir else ""), -line.raw_length))
    return found


_ZONES: list[str] = []


def _zones() -> list[str]:
    if not _ZONES:  # reading the zone database takes a moment: once, on first use
        import zoneinfo
        _ZONES.extend(sorted(zoneinfo.available_timezones()))
    return _ZONES


class ConsoleCompleter(Completer):
    """prompt_toolkit's face of `suggest`; `state` is read at each keystroke."""

    def __init__(self, registry: Registry, state: Callable[[], ServerState]) -> None:
        self.registry = registry
        self.state = state

    def get_completions(self, document: Document, complete_event: CompleteEvent
                        ) -> Iterator[Completion]:
        for s in suggest(self.registry, self.state(), document.text_before_cursor):
            yield Completion(s.text, start_position=s.start, display_meta=s.meta or None)


def tab_key_bindings(completer: Completer) -> KeyBindings:
    """Tab completes at once, not in the background as prompt_toolkit's own binding does.

    prompt_toolkit drops a Tab pressed while the completion it started for the
    previous keystroke is still running, so a quick "pos<Tab>" could do
    nothing. Our completer only reads memory, so it can run in the key handler.
    """
    bindings = KeyBindings()

    @bindings.add("tab", filter=has_focus(DEFAULT_BUFFER))
    def _complete(event: KeyPressEvent) -> None:
        buffer = event.current_buffer
        if buffer.complete_state:  # the menu is open: move to the next entry
            buffer.complete_next()
            return
        document = buffer.document
        found = list(completer.get_completions(document, CompleteEvent(completion_requested=True)))
        common = get_common_complete_suffix(document, found) if found else ""
        if len(found) == 1:
            buffer.apply_completion(found[0])
        elif common:
            buffer.insert_text(common)
        elif found:  # show the menu; the next Tab selects its first entry
            buffer.complete_state = CompletionState(original_document=document, completions=found)
            buffer.on_completions_changed.fire()

    return bindings
