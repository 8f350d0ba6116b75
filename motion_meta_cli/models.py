"""Values that cross module boundaries: users fetched from Meta, customers, fetch results."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, field_validator, model_validator

from motion_meta_cli.errors import MotionMetaError, UsageError

_CUSTOMER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,127}")


def validate_customer_name(name: str) -> str:
    """Return `name` if it can name a customer (letters, digits, `_ . @ -`), else raise `UsageError`."""
    if not _CUSTOMER_NAME.fullmatch(name):
        raise UsageError(
            f"invalid customer name {name!r}: use 1-128 letters, digits or _ . @ -, starting with a letter or digit"
        )
    return name


MAX_FIELD_BYTES = 64 * 1024
"""The largest field value (as JSON) a stored profile keeps; Meta's profile fields are far smaller."""
MAX_PROFILE_BYTES = 256 * 1024
"""The largest profile stored: its snapshot and its history row each fit a DynamoDB item (400 KB)."""


class MetaUser(BaseModel):
    """The object that owns a token, as `/me` returns it: id and name always, other requested fields kept.
    A profile with a field over MAX_FIELD_BYTES, or over MAX_PROFILE_BYTES in all, is refused, not cut."""

    model_config = ConfigDict(extra="allow", frozen=True)

    id: str
    name: str

    @field_validator("id", "name")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty")
        return value

    @model_validator(mode="after")
    def _bounded(self) -> MetaUser:
        total = 0
        for name, value in self.model_dump().items():
            size = len(json.dumps(value, ensure_ascii=False).encode())
            if size > MAX_FIELD_BYTES:
                raise ValueError(f"field {name!r} is {size} bytes, more than the {MAX_FIELD_BYTES} stored per field")
            total += size
        if total > MAX_PROFILE_BYTES:
            raise ValueError(f"the profile is {total} bytes, more than the {MAX_PROFILE_BYTES} stored per profile")
        return self

    def fields(self) -> dict[str, Any]:
        """Every field Meta returned, id and name first."""
        return self.model_dump()


@dataclass(frozen=True, slots=True)
class Customer:
    """A customer whose Meta data we keep fresh."""

    name: str
    active: bool
    added_at: datetime


@dataclass(frozen=True, slots=True)
class FetchResult:
    """The outcome of fetching one customer's `/me`; `error` is set exactly when `ok` is False."""

    customer: str
    fetched_at: datetime
    user: MetaUser | None = None
    error: MotionMetaError | None = None
    attempts: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when a user was fetched."""
        return self.error is None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form: the user's fields on success, the error's kind and message on failure."""
        out: dict[str, Any] = {
            "customer": self.customer,
            "ok": self.ok,
            "fetched_at": iso_utc(self.fetched_at),
        }
        if self.user is not None:
            out.update(self.user.fields())
        if self.error is not None:
            out["error"] = {"kind": self.error.kind, "message": self.error.message}
        return out


def utc_now() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


def iso_utc(moment: datetime) -> str:
    """ISO 8601 in UTC with a `Z`, millisecond precision: `2026-11-28T15:18:11.123Z`."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
