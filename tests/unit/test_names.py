"""One rule for agent, admin, bundle and process names."""
from __future__ import annotations

import pytest

from lotc.errors import InvalidRequest
from lotc.names import MAX_NAME_LENGTH, is_valid_name, validate_name


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
