"""Labels and agent selectors: the one parser and matcher every command uses (DESIGN 7).

Pure: strings in, values or InvalidRequest/UnknownAgent out; no I/O.

A selector says which agents a command is for:

    web-1              one agent, by name
    web-*              a glob (fnmatch's syntax: * ? [abc])
    all                every agent
    n1,n2,web-*        a comma list of names and globs: agents matching any of them
    role=web           a label term: the agent has label role with value web
    role=web,zone!=b   label terms, ALL of which must hold; key!=value holds when the
                       agent's label differs or it has no such label (Kubernetes' rule)

A term containing '=' is a label term. Names and label terms do not mix in one
selector ("web-1,role=web" is refused): a mix would leave the reader guessing
whether the comma means OR (names) or AND (labels).

A label is KEY=VALUE. Keys: 1-63 of letters, digits, '.', '_', '-' and '/',
starting with a letter or digit (`role`, `example.com/tier`). Values: 1-63 of
letters, digits, '.', '_', '-', starting with a letter or digit. Neither may
hold ',', '=', '!' or a glob character, so a selector splits without quoting.

Which label wins: an agent announces its `--label`s when it connects; a label
set from the console overrides the agent's for the same key until `unlabel`
removes it (`effective_labels`).
"""
from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from lotc.errors import InvalidRequest, UnknownAgent
from lotc.names import ALL, glob_matcher, is_glob, validate_selector

__all__ = [
    "MAX_LABELS", "MAX_SELECTOR_LENGTH", "MAX_TERMS", "LabelTerm", "Selector",
    "effective_labels", "parse_label", "parse_labels", "parse_selector", "select",
    "validate_label_key", "validate_label_value",
]

MAX_LABEL_LENGTH = 63
MAX_LABELS = 32  # per agent and source: a label set is a tag list, not a database
# A comma list of 100 names fits easily; the field is 16-bit, and terms are matched
# against every known agent, so their number is bounded too.
MAX_SELECTOR_LENGTH = 8192
MAX_TERMS = 256

_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]{0,62}")
_VALUE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")
_KEY_RULE = "1-63 of letters, digits, '.', '_', '-', '/', starting with a letter or digit"
_VALUE_RULE = "1-63 of letters, digits, '.', '_', '-', starting with a letter or digit"

Labels = Mapping[str, str]


def _shown(text: str) -> str:
    return repr(text if len(text) <= 80 else text[:77] + "...")


def validate_label_key(key: str) -> str:
    if _KEY.fullmatch(key) is None:
        raise InvalidRequest(f"invalid label key {_shown(key)}: use {_KEY_RULE}")
    return key


def validate_label_value(key: str, value: str) -> str:
    if _VALUE.fullmatch(value) is None:
        if not value:
            raise InvalidRequest(f"label {key!r} has no value: write {key}=VALUE "
                                 f"(to remove a label, use unlabel)")
        raise InvalidRequest(f"invalid value {_shown(value)} for label {key!r}: use {_VALUE_RULE}")
    return value


def parse_label(text: str) -> tuple[str, str]:
    """`KEY=VALUE` -> (key, value), or InvalidRequest in plain words."""
    key, equals, value = text.partition("=")
    if not equals:
        raise InvalidRequest(f"label {_shown(text)} needs a value: write KEY=VALUE, "
                             f"for example role=web")
    return validate_label_key(key), validate_label_value(key, value)


def parse_labels(texts: Iterable[str]) -> dict[str, str]:
    """Several `KEY=VALUE`s; a key given twice with two values is refused, not guessed."""
    labels: dict[str, str] = {}
    for text in texts:
        key, value = parse_label(text)
        if labels.get(key, value) != value:
            raise InvalidRequest(f"label {key!r} is given twice ({key}={labels[key]} and "
                                 f"{key}={value}): keep one")
        labels[key] = value
    if len(labels) > MAX_LABELS:
        raise InvalidRequest(f"{len(labels)} labels given; an agent may have at most {MAX_LABELS}")
    return labels


def effective_labels(announced: Labels, console: Labels) -> dict[str, str]:
    """The labels selectors see: the agent's own, overridden key by key from the console."""
    return {**announced, **console}


@dataclass(frozen=True)
class LabelTerm:
    key: str
    value: str
    equal: bool  # True: key=value; False: key!=value

    def holds(self, labels: Labels) -> bool:
        return (labels.get(self.key) == self.value) == self.equal

    def __str__(self) -> str:
        return f"{self.key}{'=' if self.equal else '!='}{self.value}"


@dataclass(frozen=True)
class Selector:
    """A parsed selector (see the module's docstring); `text` is what the user typed."""

    text: str
    every: bool = False
    names: tuple[str, ...] = ()  # plain names
    globs: tuple[str, ...] = ()
    terms: tuple[LabelTerm, ...] = ()
    _globs: tuple[Callable[[str], bool], ...] = field(default=(), compare=False, repr=False)

    @property
    def uses_labels(self) -> bool:
        return bool(self.terms)

    @property
    def single_name(self) -> str | None:
        """The one agent named, when the selector is just that (the common, fast case)."""
        if len(self.names) == 1 and not (self.every or self.globs or self.terms):
            return self.names[0]
        return None

    def matches(self, name: str, labels: Labels | None = None) -> bool:
        if self.terms:
            have = labels or {}
            return all(term.holds(have) for term in self.terms)
        return self.every or name in self.names or any(match(name) for match in self._globs)


def _label_term(term: str, text: str) -> LabelTerm:
    key, equals, value = term.partition("!=")
    if not equals:
        key, _, value = term.partition("=")
    if not key:
        raise InvalidRequest(f"label term {_shown(term)} in selector {_shown(text)} has no key: "
                             f"write key=value or key!=value")
    return LabelTerm(validate_label_key(key), validate_label_value(key, value), not equals)


def parse_selector(text: str) -> Selector:
    """Parse a selector; InvalidRequest, naming the selector, when it is not one."""
    text = text.strip()
    if not text:
        raise InvalidRequest("no agent given: name an agent, a glob such as 'web-*', 'all', "
                             "a comma list, or label terms such as 'role=web'")
    parts = [part.strip() for part in text.split(",")]
    if len(parts) > 1 and len(text) > MAX_SELECTOR_LENGTH:  # one term: its own limit says
        raise InvalidRequest(f"selector is {len(text)} characters long; "
                             f"the limit is {MAX_SELECTOR_LENGTH}")
    if len(parts) > MAX_TERMS:
        raise InvalidRequest(f"selector has {len(parts)} terms; the limit is {MAX_TERMS}")
    if "" in parts:
        raise InvalidRequest(f"selector {_shown(text)} has an empty term: "
                             f"separate names or label terms with single commas")
    labelled = ["=" in part for part in parts]
    if any(labelled):
        if not all(labelled):
            raise InvalidRequest(
                f"selector {_shown(text)} mixes agent names and label terms: use names and "
                f"globs (web-1,web-*) or label terms (role=web,zone!=b), not both")
        return Selector(text, terms=tuple(_label_term(part, text) for part in parts))
    for part in parts:
        validate_selector(part)  # a name or a glob no longer than one can be
    globs = tuple(dict.fromkeys(p for p in parts if is_glob(p)))
    return Selector(
        text, every=ALL in parts or "*" in parts,
        names=tuple(dict.fromkeys(p for p in parts if not is_glob(p) and p != ALL)),
        globs=globs, _globs=tuple(glob_matcher(g) for g in globs),
    )


def select(selector: Selector, known: Sequence[str],
           labels: Mapping[str, Labels] | None = None) -> list[str]:
    """The agents of `known` (in its order) the selector matches.

    UnknownAgent when it matches none, naming the selector; a plain name in a
    comma list must be a known agent (a typo is not quietly skipped).
    """
    if selector.names and not selector.every:
        known_set = set(known)
        missing = [name for name in selector.names if name not in known_set]
        if missing:
            where = "" if selector.single_name else f" (in {_shown(selector.text)})"
            raise UnknownAgent(f"unknown agent{'s' if len(missing) > 1 else ''} "
                               f"{', '.join(map(repr, missing))}{where}")
    table = labels or {}
    matched = [name for name in known if selector.matches(name, table.get(name))]
    if not matched:
        raise UnknownAgent(f"no agent matches {_shown(selector.text)}")
    return matched
