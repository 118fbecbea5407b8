"""lotc/selectors.py: labels and selectors, parsed and matched (pure, no server)."""
from __future__ import annotations

import fnmatch

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lotc.errors import InvalidRequest, UnknownAgent
from lotc.selectors import (
    MAX_LABELS,
    effective_labels,
    parse_label,
    parse_labels,
    parse_selector,
    select,
)

AGENTS = ["db-1", "web-1", "web-2", "web-3"]
LABELS = {
    "web-1": {"role": "web", "zone": "a"},
    "web-2": {"role": "web", "zone": "b"},
    "web-3": {"role": "web"},
    "db-1": {"role": "db", "zone": "a"},
}


@pytest.mark.parametrize(("text", "expected"), [
    ("web-1", ["web-1"]),
    ("web-*", ["web-1", "web-2", "web-3"]),
    ("all", AGENTS),
    ("*", AGENTS),
    ("db-1,web-2", ["db-1", "web-2"]),
    ("web-2,db-*", ["db-1", "web-2"]),  # in the known agents' order, each once
    ("web-1,web-*", ["web-1", "web-2", "web-3"]),
    ("role=web", ["web-1", "web-2", "web-3"]),
    ("role=web,zone=a", ["web-1"]),  # AND
    ("role=web,zone!=b", ["web-1", "web-3"]),  # != holds for an agent without the label
    ("zone!=a", ["web-2", "web-3"]),
    (" role=db ", ["db-1"]),
])
def test_selectors_match_what_design_7_says(text: str, expected: list[str]) -> None:
    assert select(parse_selector(text), AGENTS, LABELS) == expected


@pytest.mark.parametrize(("text", "words"), [
    ("", "no agent given"),
    ("web-1,role=web", "mixes agent names and label terms"),
    ("web-1,,web-2", "has an empty term"),
    ("web-1,", "has an empty term"),
    ("role=", "label 'role' has no value"),
    ("=web", "has no key"),
    ("!=web", "has no key"),
    ("ro le=web", "invalid label key 'ro le'"),
    ("role=w*b", "invalid value 'w*b' for label 'role'"),
    ("role==web", "invalid value '=web'"),
    ("a" * 70, "agent name is 70 characters long"),
    (",".join(["n"] * 300), "the limit is 256"),
])
def test_bad_selectors_are_refused_in_plain_words(text: str, words: str) -> None:
    with pytest.raises(InvalidRequest, match=None) as info:
        parse_selector(text)
    assert words in str(info.value)


def test_a_selector_that_matches_nothing_names_it() -> None:
    with pytest.raises(UnknownAgent, match=r"^no agent matches 'role=cache'$"):
        select(parse_selector("role=cache"), AGENTS, LABELS)
    with pytest.raises(UnknownAgent, match=r"^no agent matches 'cache-\*'$"):
        select(parse_selector("cache-*"), AGENTS, LABELS)
    with pytest.raises(UnknownAgent, match=r"^unknown agent 'nope'$"):
        select(parse_selector("nope"), AGENTS, LABELS)
    # a typo in a list is not skipped quietly
    with pytest.raises(UnknownAgent, match=r"^unknown agent 'wbe-2' \(in 'web-1,wbe-2'\)$"):
        select(parse_selector("web-1,wbe-2"), AGENTS, LABELS)


def test_single_name_is_the_fast_case() -> None:
    assert parse_selector("web-1").single_name == "web-1"
    for text in ("web-*", "all", "web-1,web-2", "role=web"):
        assert parse_selector(text).single_name is None
    assert parse_selector("role=web").uses_labels
    assert not parse_selector("web-*").uses_labels


def test_labels_parse_and_refuse_clearly() -> None:
    assert parse_label("role=web") == ("role", "web")
    assert parse_label("example.com/tier=front-1") == ("example.com/tier", "front-1")
    assert parse_labels(["role=web", "zone=a", "role=web"]) == {"role": "web", "zone": "a"}
    with pytest.raises(InvalidRequest, match="needs a value: write KEY=VALUE"):
        parse_label("role")
    with pytest.raises(InvalidRequest, match="given twice"):
        parse_labels(["role=web", "role=db"])
    with pytest.raises(InvalidRequest, match=f"at most {MAX_LABELS}"):
        parse_labels([f"k{i}=v" for i in range(MAX_LABELS + 1)])
    with pytest.raises(InvalidRequest, match="invalid value 'a,b'"):
        parse_label("role=a,b")
    with pytest.raises(InvalidRequest, match="invalid label key"):
        parse_label("-role=web")
    with pytest.raises(InvalidRequest, match="invalid value"):
        parse_label("role=" + "v" * 64)


def test_the_console_wins_over_the_agent() -> None:
    assert effective_labels({"role": "web", "zone": "a"}, {"zone": "b"}) == \
        {"role": "web", "zone": "b"}


# ---------------------------------------------------------------- properties

NAME = st.from_regex(r"[a-z0-9][a-z0-9._-]{0,10}", fullmatch=True)
KEY = st.from_regex(r"[a-z][a-z0-9._/-]{0,6}", fullmatch=True)
VALUE = st.from_regex(r"[a-z0-9][a-z0-9._-]{0,6}", fullmatch=True)
LABEL_SETS = st.dictionaries(KEY, VALUE, max_size=4)
FLEET = st.dictionaries(NAME, LABEL_SETS, min_size=1, max_size=8)
TERMS = st.lists(st.tuples(KEY, st.booleans(), VALUE), min_size=1, max_size=4)


@given(FLEET, TERMS)
def test_label_terms_are_an_and_of_each_term(fleet: dict[str, dict[str, str]],
                                             terms: list[tuple[str, bool, str]]) -> None:
    text = ",".join(f"{k}{'=' if eq else '!='}{v}" for k, eq, v in terms)
    known = sorted(fleet)
    expected = [name for name in known
                if all((fleet[name].get(k) == v) == eq for k, eq, v in terms)]
    selector = parse_selector(text)
    if expected:
        assert select(selector, known, fleet) == expected
    else:
        with pytest.raises(UnknownAgent, match="no agent matches"):
            select(selector, known, fleet)


GLOB = st.from_regex(r"[a-z0-9*?]{1,6}", fullmatch=True)


@given(st.lists(NAME, min_size=1, max_size=8, unique=True),
       st.lists(GLOB, min_size=1, max_size=3))
def test_a_list_of_globs_is_an_or_of_fnmatch(known: list[str], globs: list[str]) -> None:
    expected = [n for n in known if any(fnmatch.fnmatchcase(n, g) for g in globs)]
    selector = parse_selector(",".join(globs))
    if not any(g != "all" and not set("*?") & set(g) for g in globs):  # globs (or all) only
        if "all" in globs:
            expected = known
        if expected:
            assert select(selector, known) == expected
        else:
            with pytest.raises(UnknownAgent, match="no agent matches"):
                select(selector, known)


@given(st.text(max_size=40))
def test_any_text_parses_or_is_refused_with_invalid_request(text: str) -> None:
    try:
        parse_selector(text)
    except InvalidRequest:
        pass
