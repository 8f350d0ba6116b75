"""MetaUserAgent: what motion-meta asks Meta for, on behalf of one customer."""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence

from pydantic import SecretStr, ValidationError

from motion_meta_cli.credentials import CredentialsManager
from motion_meta_cli.errors import InvalidFieldsError, UpstreamError
from motion_meta_cli.models import MetaUser
from motion_meta_cli.request_manager import MetaRequestManager

log = logging.getLogger(__name__)

REQUIRED_FIELDS = ("id", "name")

# A field name, optionally with sub-fields `{a,b}` and modifiers `.type(large)`, as Graph API accepts.
_FIELD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\{[A-Za-z0-9_,]+\})?(\.[A-Za-z_]+\([A-Za-z0-9_]+\))*")


def normalize_fields(fields: Sequence[str]) -> tuple[str, ...]:
    """`fields` cleaned, deduplicated, with id and name first; raises InvalidFieldsError on a bad name."""
    out = list(REQUIRED_FIELDS)
    for raw in fields:
        name = raw.strip()
        if not name:
            continue
        if not _FIELD.fullmatch(name):
            raise InvalidFieldsError(
                f"invalid field {name!r}: use names of letters, digits and underscores, e.g. --fields id,name,email"
            )
        if name not in out:
            out.append(name)
    return tuple(out)


def parse_fields(text: str) -> tuple[str, ...]:
    """A comma-separated `--fields` value as normalized field names."""
    # Split on commas outside braces so `picture{url,width}` stays one field.
    parts, depth, current = [], 0, ""
    for char in text:
        depth += {"{": 1, "}": -1}.get(char, 0)
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    return normalize_fields(parts)


class MetaUserAgent:
    """Fetches `/me` for a customer through the request manager, with the customer's credentials.

    agent = MetaUserAgent(request_manager, credentials)
    user = agent.fetch_me("acme", fields=("id", "name", "email"))
    """

    def __init__(self, requests: MetaRequestManager, credentials: CredentialsManager) -> None:
        self._requests = requests
        self._credentials = credentials

    def fetch_me(self, customer: str, fields: Sequence[str] = REQUIRED_FIELDS) -> MetaUser:
        """The user (or Page) that owns `customer`'s token, with `fields` (id and name always)."""
        wanted = normalize_fields(fields)
        params = {"fields": ",".join(wanted)}

        def request(token: SecretStr) -> MetaUser:
            response = self._requests.get("me", token, params=params, customer=customer)
            try:
                return MetaUser.model_validate(response.data)
            except ValidationError as exc:
                problem = exc.errors()[0]
                where = ".".join(str(p) for p in problem["loc"]) or "body"
                raise UpstreamError(
                    f"Meta's answer for {customer!r} is not a user profile ({where}: {problem['msg'].lower()})"
                ) from None

        try:
            return self._credentials.call(customer, request)
        except UpstreamError as exc:
            smaller = exc.classification is not None and exc.classification.reduce_request
            if not smaller or wanted == REQUIRED_FIELDS:
                raise
            log.warning("Meta asked for less data for %s; fetching only %s", customer, ", ".join(REQUIRED_FIELDS))
            params["fields"] = ",".join(REQUIRED_FIELDS)
            return self._credentials.call(customer, request)
