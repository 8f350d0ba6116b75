"""`ModerationState` on Redis, timed by Redis's own clock: records are JSON strings replaced by
compare-and-set, send logs are sorted sets admitted by one script (both in `lua/`).

Keys, under the cache's prefix: `{mod}:<key>` for records, `{mod}log:<log>` for send logs. The hash tag
`{mod}` puts every one of them in one slot of a Redis Cluster, so that a script may touch several (one
admission checks the app's, a business use case's and a customer's logs together); moderation is a few
small keys per scope, which one node holds with ease.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Sequence
from importlib.resources import files
from typing import Any

from motion_meta_cli.errors import BackendUnavailableError
from motion_meta_cli.moderation.rules import Limit
from motion_meta_cli.moderation.state import Admission, Change, Record
from motion_meta_cli.storage.redis_cache import RedisCache

TAG = "{mod}"
"""The hash tag of every moderation key (see above)."""
MAX_CONFLICTS = 100
"""Compare-and-set attempts before an update gives up (each lost attempt means another instance wrote)."""


def _script(name: str) -> str:
    return (files("motion_meta_cli.moderation") / "lua" / name).read_text(encoding="utf-8")


class RedisState:
    """Moderation shared by every instance using one Redis."""

    def __init__(self, cache: RedisCache) -> None:
        self._cache = cache
        self._p = cache.prefix
        self._admit = cache.client.register_script(_script("admit.lua"))
        self._cas = cache.client.register_script(_script("compare_and_set.lua"))
        self._read = cache.client.register_script(_script("read.lua"))

    def _record(self, key: str) -> str:
        return f"{self._p}{TAG}:{key}"

    def _get(self, keys: Sequence[str]) -> tuple[int, list[Any]]:
        # One script: the time comes from the node that holds the records (on a cluster too).
        with self._cache.errors():
            seconds, micros, *values = self._read(keys=[self._record(key) for key in keys])
        return int(seconds) * 1000 + int(micros) // 1000, [value or None for value in values]

    def read(self, keys: Sequence[str] | None) -> tuple[int, dict[str, Record]]:
        """Now and the live records among `keys` (every one when None: a SCAN, for `moderation show`)."""
        if keys is None:
            with self._cache.errors():
                found = [str(k) for k in self._cache.client.scan_iter(match=f"{self._p}{TAG}:*", count=500)]
            keys = [key[len(self._record("")) :] for key in found]
        now, values = self._get(keys)
        return now, {key: json.loads(value) for key, value in zip(keys, values, strict=True) if value is not None}

    def update(self, key: str, change: Change) -> Record | None:
        """Read, change, and compare-and-set; read again whenever another instance wrote first."""
        for _ in range(MAX_CONFLICTS):
            now, (raw,) = self._get([key])
            new = change(json.loads(raw) if raw is not None else None, now)
            value = "" if new is None or new.get("expires_ms", 0) <= now else json.dumps(new)
            ttl_ms = max(1, int(new["expires_ms"]) - now) if value and new is not None else 0
            with self._cache.errors():
                if self._cas(keys=[self._record(key)], args=[raw or "", value, ttl_ms]):
                    return new
        raise BackendUnavailableError(f"moderation record {key!r} kept changing under {MAX_CONFLICTS} updates")

    def admit(self, limits: Sequence[Limit], window_ms: int, margin_ms: int) -> Admission:
        """One script call for every log of `limits`."""
        args: list[Any] = [window_ms, margin_ms, secrets.token_hex(4)]
        for rule in limits:
            args += [-1 if rule.limit is None else rule.limit, rule.spacing_from, rule.spacing_ms, int(rule.record)]
        with self._cache.errors():
            wait, now, *counted = self._admit(keys=[f"{self._p}{TAG}log:{rule.log}" for rule in limits], args=args)
        return Admission(int(wait), int(now), tuple(int(n) for n in counted))
