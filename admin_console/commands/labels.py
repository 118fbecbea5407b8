"""`label` and `unlabel`: set and remove agent labels from the console.

The selector syntax they (and every AGENT word) use is lotc/selectors.py's;
its description is `label`'s help, which `help` points to.
"""
from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import ClassVar

from admin_console.bounds import agent_selector
from admin_console.commands.results import ResultsCommand
from admin_console.errors import UsageError
from admin_console.parsing import CommandParser
from lotc.errors import InvalidRequest
from lotc.selectors import parse_labels, validate_label_key
from protocol.messages import Label, LabelSet, LabelUnset


class LabelCommand(ResultsCommand):
    """Set labels on agents: KEY=VALUE, which selectors then match.

    A label set here is kept by the server (it survives restarts of the
    server and of the agent) and overrides, for the same key, a label the
    agent announces with `lotc agent --label`; `unlabel` removes it, and
    the agent's own value, if it has one, applies again. `agents` shows them.
    Keys: 1-63 of letters, digits, '.', '_', '-', '/'; values: 1-63 of
    letters, digits, '.', '_', '-'.

    Selectors, accepted wherever a command takes AGENT:
      web-1             one agent
      web-*             a glob (* ? [abc])
      all               every agent
      web-1,db-*        a comma list of names and globs: any of them
      role=web          agents with label role=web
      role=web,zone!=b  label terms joined by ',': ALL must hold; zone!=b
                        also holds for an agent without a zone label
    Names and label terms do not mix in one selector. A selector that
    matches no agent is an error that names it.

    Examples:
      label web-1 role=web zone=a
      label web-* tier=front
      stop role=web,zone!=b app
    """

    name = "label"
    usage = "label AGENT KEY=VALUE..."
    arguments: ClassVar[tuple[str, ...]] = ("agent", "label")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("agent", type=agent_selector)
        parser.add_argument("labels", nargs="+", metavar="KEY=VALUE")

    def parse(self, argv: Sequence[str]) -> LabelSet:
        args: argparse.Namespace = self.parser.parse(argv)
        try:
            labels = parse_labels(args.labels)
        except InvalidRequest as exc:
            raise UsageError(str(exc)) from None
        return LabelSet(target=args.agent,
                        labels=tuple(Label(key=k, value=v) for k, v in labels.items()))


class UnlabelCommand(ResultsCommand):
    """Remove labels set from the console (by key) from agents.

    What the agent announces itself (`lotc agent --label`) cannot be removed
    from here: unlabel says so and fails; restart the agent without it, or
    override it with `label`. Removing a console label that overrode the
    agent's own brings the agent's value back. See `help label` for selectors.

    Examples:
      unlabel web-1 zone
      unlabel role=web tier zone
    """

    name = "unlabel"
    usage = "unlabel AGENT KEY..."
    arguments: ClassVar[tuple[str, ...]] = ("agent", "label-key")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("agent", type=agent_selector)
        parser.add_argument("keys", nargs="+", metavar="KEY")

    def parse(self, argv: Sequence[str]) -> LabelUnset:
        args: argparse.Namespace = self.parser.parse(argv)
        try:
            keys = tuple(dict.fromkeys(validate_label_key(k) for k in args.keys))
        except InvalidRequest as exc:
            raise UsageError(str(exc)) from None
        return LabelUnset(target=args.agent, keys=keys)
