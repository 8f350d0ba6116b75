"""Who the emulator believes owns each token, and what `/me` reveals about them.

A users file looks like this; every key other than `token`, `id` and `name` is an optional profile field:

    {"users": [{"token": "EAA...", "id": "10000000000000002", "name": "Ada Lovelace",
                "email": "ada@example.com"}],
     "expired_tokens": ["EAA..."]}
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

DEMO_TOKEN = "EAAMotionDemo" + "0123456789" * 4
"""Token of the built-in demo user; fake, and accepted only by the emulator."""
DEMO_USER_ID = "10000000000000001"
"""The demo user's id."""
DEMO_USER_NAME = "Motion Test User"
"""The demo user's name."""
EXPIRED_DEMO_TOKEN = "EAAMotionExpired" + "0123456789" * 4
"""A token the emulator always answers as expired (190/463)."""

DEFAULT_FIELDS = ("name", "id")
"""What `/me` returns without `fields=`, in Meta's order."""
PROFILE_FIELDS = frozenset(
    {"id", "name", "first_name", "last_name", "middle_name", "short_name", "name_format", "email", "picture"}
)
"""Every field the emulator can serve on a User node."""

_RECORD_KEYS = ("token", "id", "name")
_EXTRA_FIELDS = PROFILE_FIELDS - set(_RECORD_KEYS)
_DERIVED_TOKEN_PREFIX = "EAA"
_DERIVED_TOKEN_MIN_LEN = 20
_PICTURE_SIZE = 50


@dataclass(frozen=True, slots=True)
class EmulatorUser:
    """One token's owner; `fields` holds extra profile fields such as `email` or `first_name`."""

    token: str = field(repr=False)
    id: str
    name: str
    fields: Mapping[str, Any] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "fields", MappingProxyType(dict(self.fields)))

    def field_value(self, name: str) -> Any | None:
        """The value `/me` shows for field `name`, derived from `name` when not stored; None to omit it."""
        if name == "id":
            return self.id
        if name == "name":
            return self.name
        if name in self.fields:
            stored = self.fields[name]
            return _picture(stored) if name == "picture" else stored
        return self._derived(name)

    def _derived(self, name: str) -> Any | None:
        words = self.name.split()
        first = self.fields.get("first_name", words[0] if words else None)
        last = self.fields.get("last_name", words[-1] if len(words) > 1 else None)
        match name:
            case "first_name" | "short_name":
                return first
            case "last_name":
                return last
            case "middle_name":
                return " ".join(words[1:-1]) or None
            case "name_format":
                return "{first} {last}" if last else "{first}"
            case "picture":
                return _picture(
                    "https://platform-lookaside.fbsbx.com/platform/profilepic/"
                    f"?asid={self.id}&height={_PICTURE_SIZE}&width={_PICTURE_SIZE}"
                )
        return None


def _picture(url: Any) -> dict[str, Any]:
    return {"data": {"height": _PICTURE_SIZE, "is_silhouette": False, "url": url, "width": _PICTURE_SIZE}}


def default_users() -> list[EmulatorUser]:
    """The built-in users: the demo user behind `DEMO_TOKEN`."""
    return [
        EmulatorUser(
            token=DEMO_TOKEN,
            id=DEMO_USER_ID,
            name=DEMO_USER_NAME,
            fields={"email": "motion.test.user@example.com"},
        )
    ]


class UserDirectory:
    """Resolves a token to its user, to "expired", or to None for a token Meta could not parse.

    With `accept_any_token`, any unknown token that starts with "EAA" and has at least 20 characters belongs
    to a user derived from the token itself, so tests can use thousands of customers without a users file.
    """

    def __init__(
        self,
        users: Iterable[EmulatorUser] = (),
        expired_tokens: Iterable[str] = (),
        *,
        accept_any_token: bool = False,
    ) -> None:
        by_token: dict[str, EmulatorUser] = {}
        for user in users:
            if user.token in by_token:
                first = by_token[user.token].id
                raise ValueError(f"two users share one token (user ids {first} and {user.id})")
            by_token[user.token] = user
        expired = frozenset(expired_tokens)
        if clash := expired & by_token.keys():
            ids = ", ".join(sorted(by_token[token].id for token in clash))
            raise ValueError(f"a token is both a user's and expired (user ids {ids})")
        self._by_token = by_token
        self._expired = expired
        self.accept_any_token = accept_any_token

    @property
    def users(self) -> tuple[EmulatorUser, ...]:
        """Every user with a known token, in the order given."""
        return tuple(self._by_token.values())

    @property
    def expired_tokens(self) -> frozenset[str]:
        """Tokens answered as expired."""
        return self._expired

    def lookup(self, token: str) -> EmulatorUser | Literal["expired"] | None:
        """The user owning `token`, "expired", or None when the token is not valid."""
        if (user := self._by_token.get(token)) is not None:
            return user
        if token in self._expired:
            return "expired"
        if self.accept_any_token and _looks_like_user_token(token):
            return derived_user(token)
        return None

    def __repr__(self) -> str:
        return (
            f"UserDirectory({len(self._by_token)} users, {len(self._expired)} expired tokens, "
            f"accept_any_token={self.accept_any_token})"
        )


def default_directory(*, accept_any_token: bool = False) -> UserDirectory:
    """The built-in users plus `EXPIRED_DEMO_TOKEN`."""
    return UserDirectory(default_users(), [EXPIRED_DEMO_TOKEN], accept_any_token=accept_any_token)


def derived_user(token: str) -> EmulatorUser:
    """The deterministic user that `accept_any_token` assigns to an otherwise unknown token."""
    digest = hashlib.sha256(token.encode()).digest()
    user_id = "1" + f"{int.from_bytes(digest[:8], 'big') % 10**16:016d}"
    return EmulatorUser(token=token, id=user_id, name=f"Emulated User {user_id[-4:]}")


def _looks_like_user_token(token: str) -> bool:
    return token.startswith(_DERIVED_TOKEN_PREFIX) and len(token) >= _DERIVED_TOKEN_MIN_LEN


def load_users(path: Path, *, accept_any_token: bool = False) -> UserDirectory:
    """Read a users file; a file that cannot be used raises ValueError naming the file and the problem."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ValueError(f"users file {path}: cannot read it ({reason})") from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(
            f"users file {path}: not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})"
        ) from exc
    try:
        users, expired = _parse_document(data)
        return UserDirectory(users, expired, accept_any_token=accept_any_token)
    except ValueError as exc:
        raise ValueError(f"users file {path}: {exc}") from exc


def _parse_document(data: Any) -> tuple[list[EmulatorUser], list[str]]:
    if not isinstance(data, dict):
        raise ValueError('expected a JSON object like {"users": [...], "expired_tokens": [...]}')
    if unknown := sorted(data.keys() - {"users", "expired_tokens"}):
        raise ValueError(f"unknown top-level key {unknown[0]!r} (allowed: users, expired_tokens)")
    raw_users = data.get("users")
    if not isinstance(raw_users, list):
        raise ValueError('"users" must be a list of user objects')
    raw_expired = data.get("expired_tokens", [])
    if not isinstance(raw_expired, list) or not all(_is_text(token) for token in raw_expired):
        raise ValueError('"expired_tokens" must be a list of non-empty strings')
    return [_parse_user(index, raw) for index, raw in enumerate(raw_users)], raw_expired


def _parse_user(index: int, raw: Any) -> EmulatorUser:
    where = f"users[{index}]"
    if not isinstance(raw, dict):
        raise ValueError(f"{where} must be an object with token, id and name")
    for key in _RECORD_KEYS:
        if not _is_text(raw.get(key)):
            raise ValueError(f"{where} needs {key!r} as a non-empty string")
    if not raw["id"].isdigit():
        raise ValueError(f"{where}.id must be digits only, like Meta's user ids")
    extras = {key: value for key, value in raw.items() if key not in _RECORD_KEYS}
    for key, value in extras.items():
        if key not in _EXTRA_FIELDS:
            allowed = ", ".join(sorted(_EXTRA_FIELDS))
            raise ValueError(f"{where} has unknown field {key!r} (allowed: {allowed})")
        if not _is_text(value):
            raise ValueError(f"{where}.{key} must be a non-empty string")
    return EmulatorUser(token=raw["token"], id=raw["id"], name=raw["name"], fields=extras)


def _is_text(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip())
