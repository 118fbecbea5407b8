"""One rule for agent, admin, bundle and process names."""
from __future__ import annotations

import fnmatch

import pytest

from lotc.errors import InvalidRequest
from lotc.names import (
    MAX_GLOB_LENGTH,
    MAX_NAME_LENGTH,
    glob_matcher,
    is_glob,
    is_valid_name,
    validate_name,
    validate_selector,
)


@pytest.mark.parametrize("name", ["web1", "a", "Web_1.prod-eu", "_x", "9", "a" * MAX_NAME_LENGTH])
def test_valid_names(name: str) -> None:
    assert validate_name("agent", name) == name
    assert is_valid_name(name)


@pytest.mark.parametrize("name", [".", "..", ".hidden", "-rf", "a/b", "a b", "é", "a\n", "a;b"])
def test_invalid_names_say_what_is_allowed(name: str) -> None:
    with pytest.raises(InvalidRequest, match=r"invalid process name .*letters, digits"):
        validate_name("process", name)
    assert not is_valid_name(name)


def test_empty_and_long_names() -> None:
    with pytest.raises(InvalidRequest, match="bundle name is empty"):
        validate_name("bundle", "")
    with pytest.raises(InvalidRequest, match="65 characters long; the limit is 64"):
        validate_name("agent", "a" * 65)


# ---------------------------------------------------------------- selectors (issue 14, item 15)


@pytest.mark.parametrize(("pattern", "name"), [
    ("web-*", "web-1"), ("web-?", "web-12"), ("[a-c]*", "b.x"), ("[!a]*", "a1"), ("*", ""),
    ("a[", "a["), ("[]]", "]"), ("*.*", "x.y"), ("WEB-*", "web-1"),
])
def test_glob_matcher_is_fnmatchcase(pattern: str, name: str) -> None:
    assert glob_matcher(pattern)(name) is fnmatch.fnmatchcase(name, pattern)


def test_selectors_longer_than_any_name_or_glob_are_refused() -> None:
    assert validate_selector("a" * MAX_NAME_LENGTH) == "a" * MAX_NAME_LENGTH
    assert validate_selector("*" * MAX_GLOB_LENGTH) == "*" * MAX_GLOB_LENGTH
    with pytest.raises(InvalidRequest, match="agent name is 70000 characters long; the limit is 64"):
        validate_selector("a" * 70_000)
    with pytest.raises(InvalidRequest, match=f"agent glob is 257 .* limit is {MAX_GLOB_LENGTH}"):
        glob_matcher("*" * (MAX_GLOB_LENGTH + 1))
    assert is_glob("web-*") and is_glob("n[12]") and not is_glob("all")
