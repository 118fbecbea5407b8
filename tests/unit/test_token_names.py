from __future__ import annotations

import pytest

from lotc.errors import InvalidRequest
from lotc.token_names import login_name, new_token, owner_of


@pytest.mark.parametrize("name", ["alice", "web.1", "a_b-c", "x" * 64])
def test_a_new_token_names_its_owner(name: str) -> None:
    token = new_token(name)
    assert owner_of(token) == name
    assert login_name(token, None, kind="admin") == name
    assert login_name(token, name, kind="admin") == name


def test_bare_tokens_name_nobody() -> None:
    assert owner_of("Zr1mPq_e-4") is None
    assert owner_of("alice.") is None and owner_of(".secret") is None
    assert login_name("Zr1mPq_e-4", "carol", kind="admin", fallback="admin") == "carol"
    assert login_name("Zr1mPq_e-4", None, kind="admin", fallback="admin") == "admin"
    with pytest.raises(InvalidRequest, match="give --name"):
        login_name("Zr1mPq_e-4", None, kind="agent")


def test_a_disagreeing_name_is_an_error_naming_both() -> None:
    with pytest.raises(InvalidRequest, match=r"--name 'bob' .* admin 'alice'"):
        login_name(new_token("alice"), "bob", kind="admin")
