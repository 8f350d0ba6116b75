"""Users the emulator knows: defaults, users files and tokens accepted on the fly."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from motion_meta_cli.emulator import (
    DEMO_TOKEN,
    EXPIRED_DEMO_TOKEN,
    EmulatorUser,
    UserDirectory,
    default_directory,
    default_users,
    load_users,
)


def write_json(path: Path, data: Any) -> Path:
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def test_default_users_hold_the_demo_user() -> None:
    [demo] = default_users()

    assert demo.token == DEMO_TOKEN
    assert (demo.id, demo.name) == ("10000000000000001", "Motion Test User")
    assert DEMO_TOKEN.startswith("EAA")
    assert len(DEMO_TOKEN) > 40


def test_default_directory_knows_demo_and_expired_tokens() -> None:
    directory = default_directory()

    assert directory.lookup(DEMO_TOKEN) == default_users()[0]
    assert directory.lookup(EXPIRED_DEMO_TOKEN) == "expired"
    assert directory.lookup("EAA" + "x" * 40) is None
    assert directory.accept_any_token is False


def test_profile_fields_are_stored_or_derived_from_the_name() -> None:
    user = EmulatorUser(token="t", id="42", name="Ada King Lovelace", fields={"short_name": "Ada L."})

    assert user.field_value("first_name") == "Ada"
    assert user.field_value("middle_name") == "King"
    assert user.field_value("last_name") == "Lovelace"
    assert user.field_value("short_name") == "Ada L."
    assert user.field_value("email") is None
    assert user.field_value("picture")["data"]["width"] == 50


def test_user_repr_and_fields_do_not_leak_or_change() -> None:
    user = EmulatorUser(token=DEMO_TOKEN, id="42", name="Ada", fields={"email": "a@example.com"})

    assert DEMO_TOKEN not in repr(user)
    with pytest.raises(TypeError):
        user.fields["email"] = "other@example.com"  # type: ignore[index]


def test_load_users_reads_users_and_expired_tokens(tmp_path: Path) -> None:
    path = write_json(
        tmp_path / "users.json",
        {
            "users": [
                {"token": "EAAone", "id": "101", "name": "Ada Lovelace", "email": "ada@example.com"},
                {"token": "EAAtwo", "id": "102", "name": "Alan Turing"},
            ],
            "expired_tokens": ["EAAold"],
        },
    )

    directory = load_users(path)

    ada = directory.lookup("EAAone")
    assert isinstance(ada, EmulatorUser)
    assert (ada.id, ada.name, dict(ada.fields)) == ("101", "Ada Lovelace", {"email": "ada@example.com"})
    assert directory.lookup("EAAold") == "expired"
    assert directory.lookup(DEMO_TOKEN) is None  # a users file replaces the defaults
    assert [user.id for user in directory.users] == ["101", "102"]


def test_expired_tokens_are_optional(tmp_path: Path) -> None:
    path = write_json(tmp_path / "users.json", {"users": [{"token": "EAAone", "id": "1", "name": "A"}]})

    assert load_users(path).expired_tokens == frozenset()


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("{not json", "not valid JSON"),
        ("[]", "expected a JSON object"),
        ('{"users": {}}', '"users" must be a list'),
        ('{"users": [], "extra": 1}', "unknown top-level key 'extra'"),
        ('{"users": [], "expired_tokens": [1]}', '"expired_tokens" must be a list of non-empty strings'),
        ('{"users": ["EAAone"]}', "users[0] must be an object"),
        ('{"users": [{"token": "EAAone", "name": "A"}]}', "users[0] needs 'id'"),
        ('{"users": [{"token": "", "id": "1", "name": "A"}]}', "users[0] needs 'token'"),
        ('{"users": [{"token": "EAAone", "id": "u1", "name": "A"}]}', "users[0].id must be digits"),
        ('{"users": [{"token": "EAAone", "id": "1", "name": "A", "age": "3"}]}', "unknown field 'age'"),
        ('{"users": [{"token": "EAAone", "id": "1", "name": "A", "email": 3}]}', "users[0].email must be"),
        (
            '{"users": [{"token": "EAAone", "id": "1", "name": "A"}, {"token": "EAAone", "id": "2", "name": "B"}]}',
            "two users share one token",
        ),
        (
            '{"users": [{"token": "EAAone", "id": "1", "name": "A"}], "expired_tokens": ["EAAone"]}',
            "both a user's and expired",
        ),
    ],
)
def test_bad_users_files_raise_one_line_naming_file_and_problem(tmp_path: Path, content: str, problem: str) -> None:
    path = tmp_path / "users.json"
    path.write_text(content, encoding="utf-8")

    with pytest.raises(ValueError) as caught:
        load_users(path)

    message = str(caught.value)
    assert str(path) in message
    assert problem in message
    assert "\n" not in message
    assert "EAAone" not in message  # tokens stay out of error messages


def test_missing_users_file_raises_value_error(tmp_path: Path) -> None:
    path = tmp_path / "nope.json"

    with pytest.raises(ValueError, match="cannot read it") as caught:
        load_users(path)

    assert str(path) in str(caught.value)


def test_accept_any_token_derives_a_stable_user() -> None:
    directory = default_directory(accept_any_token=True)
    token = "EAAcustomer0001" + "q" * 20

    first = directory.lookup(token)
    again = directory.lookup(token)
    other = directory.lookup("EAAcustomer0002" + "q" * 20)

    assert isinstance(first, EmulatorUser)
    assert isinstance(other, EmulatorUser)
    assert first == again
    assert first.id.isdigit() and len(first.id) >= 15
    assert first.name == f"Emulated User {first.id[-4:]}"
    assert other.id != first.id


def test_accept_any_token_keeps_known_and_expired_tokens() -> None:
    directory = default_directory(accept_any_token=True)

    assert directory.lookup(DEMO_TOKEN) == default_users()[0]
    assert directory.lookup(EXPIRED_DEMO_TOKEN) == "expired"


@pytest.mark.parametrize("token", ["", "EAAshort", "XYZ" + "a" * 40, "eaa" + "a" * 40])
def test_accept_any_token_still_rejects_tokens_meta_would_not_parse(token: str) -> None:
    assert UserDirectory(accept_any_token=True).lookup(token) is None


def test_load_users_can_also_accept_any_token(tmp_path: Path) -> None:
    path = write_json(tmp_path / "users.json", {"users": []})

    assert isinstance(load_users(path, accept_any_token=True).lookup("EAA" + "z" * 30), EmulatorUser)


def test_directory_repr_shows_no_tokens() -> None:
    assert DEMO_TOKEN not in repr(default_directory())
