from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import NoReturn

import pytest
from pydantic import SecretStr

from motion_meta_cli.credentials import CredentialsManager, Marker, marker_key, mask_token, validate_token
from motion_meta_cli.errors import (
    BackendUnavailableError,
    CredentialsRejectedError,
    MissingCredentialsError,
    UsageError,
)
from motion_meta_cli.storage.base import CacheLock, SecretRecord
from motion_meta_cli.storage.local_secrets import LocalSecretsStore
from motion_meta_cli.storage.sqlite_cache import SQLiteCache


class CountingSecrets(LocalSecretsStore):
    """The real local store, counting the secrets read (one by one or in bulk)."""

    reads = 0
    bulk: list[list[str]]

    def get_secret(self, customer: str) -> SecretRecord:
        self.reads += 1
        return super().get_secret(customer)

    def get_secrets(self, customers: Sequence[str]) -> dict[str, SecretRecord]:
        self.bulk = [*getattr(self, "bulk", []), list(customers)]
        self.reads += len(customers)
        return super().get_secrets(customers)


@pytest.fixture
def secrets(tmp_path: Path) -> CountingSecrets:
    return CountingSecrets(tmp_path / "secrets.json")


@pytest.fixture
def cache(tmp_path: Path) -> SQLiteCache:
    return SQLiteCache(tmp_path / "cache.db")


def test_unchanged_marker_serves_the_token_from_memory(secrets: CountingSecrets, cache: SQLiteCache) -> None:
    version = secrets.put_secret("acme", "EAAone")
    creds = CredentialsManager(secrets, cache)
    assert creds.token("acme").get_secret_value() == "EAAone"
    marker = Marker.parse(cache.get(marker_key("acme")))
    assert marker is not None and marker.version == version, "the marker is the secret's version id"
    for _ in range(5):
        creds.token("acme")
    assert secrets.reads == 1


def test_deleted_marker_makes_every_instance_reread(secrets: CountingSecrets, cache: SQLiteCache) -> None:
    secrets.put_secret("acme", "EAAone")
    a, b = CredentialsManager(secrets, cache), CredentialsManager(secrets, cache)
    assert a.token("acme").get_secret_value() == "EAAone"
    assert b.token("acme").get_secret_value() == "EAAone"
    secrets.put_secret("acme", "EAAtwo")  # rotation: new version first ...
    assert a.token("acme").get_secret_value() == "EAAone", "no marker change yet, memory copy stays"
    assert a.expire("acme") is True  # ... then delete the marker
    assert a.token("acme").get_secret_value() == "EAAtwo"
    assert b.token("acme").get_secret_value() == "EAAtwo"


def test_changed_marker_forces_a_reread(secrets: CountingSecrets, cache: SQLiteCache) -> None:
    secrets.put_secret("acme", "EAAone")
    creds = CredentialsManager(secrets, cache)
    creds.token("acme")
    cache.set(marker_key("acme"), "something-else")
    creds.token("acme")
    assert secrets.reads == 2
    creds.token("acme")
    assert secrets.reads == 2, "after the reread the marker matches again"


def test_the_token_is_never_written_to_the_cache(tmp_path: Path, secrets: CountingSecrets) -> None:
    cache = SQLiteCache(tmp_path / "cache.db")
    secrets.put_secret("acme", "EAAcanaryToken123")
    CredentialsManager(secrets, cache).token("acme")
    cache.close()
    for path in tmp_path.glob("cache.db*"):
        assert b"EAAcanaryToken123" not in path.read_bytes()


def test_missing_credentials_raise(secrets: CountingSecrets, cache: SQLiteCache) -> None:
    with pytest.raises(MissingCredentialsError):
        CredentialsManager(secrets, cache).token("nobody")


def test_rejected_token_is_reread_and_retried_once_when_it_changed(
    secrets: CountingSecrets, cache: SQLiteCache
) -> None:
    secrets.put_secret("acme", "EAAold")
    creds = CredentialsManager(secrets, cache)
    creds.token("acme")
    secrets.put_secret("acme", "EAAnew")  # rotated, but nobody expired the marker
    seen: list[str] = []

    def request(token: SecretStr) -> str:
        seen.append(token.get_secret_value())
        if token.get_secret_value() == "EAAold":
            raise CredentialsRejectedError("(#190) expired")
        return "ok"

    assert creds.call("acme", request) == "ok"
    assert seen == ["EAAold", "EAAnew"]


def test_rejected_token_with_nothing_newer_is_reported_without_a_retry(
    secrets: CountingSecrets, cache: SQLiteCache
) -> None:
    secrets.put_secret("acme", "EAAold")
    calls = 0

    def request(token: SecretStr) -> str:
        nonlocal calls
        calls += 1
        raise CredentialsRejectedError("(#190/463) Session has expired")

    with pytest.raises(CredentialsRejectedError, match="rejected the access token of customer 'acme'"):
        CredentialsManager(secrets, cache).call("acme", request)
    assert calls == 1, "re-sending a token Meta just rejected only spends quota"
    assert secrets.reads == 2, "the secrets store was read again once"


def test_a_new_token_rejected_too_is_reported(secrets: CountingSecrets, cache: SQLiteCache) -> None:
    secrets.put_secret("acme", "EAAold")
    creds = CredentialsManager(secrets, cache)
    creds.token("acme")
    secrets.put_secret("acme", "EAAalsobad")
    calls = 0

    def request(token: SecretStr) -> str:
        nonlocal calls
        calls += 1
        raise CredentialsRejectedError("(#190) invalid")

    with pytest.raises(CredentialsRejectedError, match="credentials set --customer acme"):
        creds.call("acme", request)
    assert calls == 2


class DownCache:
    """A cache that cannot be reached: every call raises, as Redis down or a locked cache.db does."""

    def _down(self) -> NoReturn:
        raise BackendUnavailableError("the SQLite file cache.db is locked by another process (waited 10 s)")

    def get(self, key: str) -> str | None:
        self._down()

    def set(self, key: str, value: str, ttl_s: float | None = None) -> None:
        self._down()

    def delete(self, key: str) -> bool:
        self._down()

    def add_many(self, keys: Sequence[str], value: str, ttl_s: float) -> list[bool]:
        self._down()

    def get_many(self, keys: Sequence[str]) -> list[str | None]:
        self._down()

    def set_many(self, items: Mapping[str, str]) -> None:
        self._down()

    def lock(self, name: str, ttl_s: float) -> CacheLock:
        self._down()

    def close(self) -> None:
        pass


@pytest.mark.parametrize("shared_refresh", [True, False])
def test_a_rejection_while_the_cache_is_down_is_still_a_rejection(
    secrets: CountingSecrets, shared_refresh: bool
) -> None:
    secrets.put_secret("acme", "EAAold")
    creds = CredentialsManager(secrets, DownCache(), shared_refresh=shared_refresh)
    calls = 0

    def request(token: SecretStr) -> str:
        nonlocal calls
        calls += 1
        raise CredentialsRejectedError("(#190) expired")

    with pytest.raises(CredentialsRejectedError) as caught:
        creds.call("acme", request)
    assert caught.value.exit_code == 4
    assert "Meta rejected the access token of customer 'acme'" in caught.value.message
    assert calls == 1, "without the re-read there is no new token to retry with"


def test_held_age_is_reported(secrets: CountingSecrets, cache: SQLiteCache) -> None:
    now = [100.0]
    secrets.put_secret("acme", "EAAx")
    creds = CredentialsManager(secrets, cache, clock=lambda: now[0], shared_refresh=False)
    assert creds.held_age_s("acme") is None
    creds.token("acme")
    now[0] += 42
    assert creds.held_age_s("acme") == 42


def test_single_flight_refresh_reads_the_secrets_store_once(secrets: CountingSecrets, cache: SQLiteCache) -> None:
    import threading

    secrets.put_secret("acme", "EAAone")
    creds = CredentialsManager(secrets, cache)
    barrier = threading.Barrier(16)
    tokens: list[str] = []

    def worker() -> None:
        barrier.wait()
        tokens.append(creds.token("acme").get_secret_value())

    threads = [threading.Thread(target=worker) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert tokens == ["EAAone"] * 16
    assert secrets.reads == 1


def test_a_hand_written_marker_is_a_version_that_forces_a_reread(secrets: CountingSecrets, cache: SQLiteCache) -> None:
    secrets.put_secret("acme", "EAAone")
    creds = CredentialsManager(secrets, cache)
    creds.token("acme")
    cache.set(marker_key("acme"), "rotated-by-ops")
    assert creds.status("acme").marker == "stale"
    reads = secrets.reads
    creds.token("acme")
    assert secrets.reads == reads + 1
    assert creds.status("acme").marker == "current"


def test_status_reports_without_the_token(secrets: CountingSecrets, cache: SQLiteCache) -> None:
    now = [1000.0]
    creds = CredentialsManager(secrets, cache, wall_clock=lambda: now[0])
    assert creds.status("acme").stored is False
    creds.set_token("acme", "EAABsecretvalue0123456789abcd4f2c")
    status = creds.status("acme")
    assert (status.stored, status.masked, status.marker) == (True, "EAAB…4f2c", "missing")
    creds.token("acme")
    now[0] += 30
    status = creds.status("acme")
    assert status.marker == "current"
    assert status.marker_age_s == 30
    assert "secretvalue" not in repr(status)


def test_status_says_rejected_while_the_marker_points_at_the_rejected_version(
    secrets: CountingSecrets, cache: SQLiteCache
) -> None:
    for name in ("acme", "globex"):
        secrets.put_secret(name, f"EAA{name}")
    creds = CredentialsManager(secrets, cache)
    for name in ("acme", "globex"):
        creds.token(name)
    assert creds.mark_rejected("acme") is True
    assert (creds.status("acme").marker, creds.status("globex").marker) == ("rejected", "current")
    creds.set_token("acme", "EAAacmeNew")
    assert creds.status("acme").marker == "missing"
    creds.token("acme")
    assert creds.status("acme").marker == "current", "the rejected mark names the old version only"


@pytest.mark.parametrize("bad", ["", "   ", "EAA abc", "EAA\tabc", "EAA\x00abc"])
def test_tokens_that_cannot_be_meta_tokens_are_refused_without_echo(bad: str) -> None:
    with pytest.raises(UsageError) as caught:
        validate_token(bad)
    assert "abc" not in str(caught.value)


def test_masking_never_shows_more_than_eight_characters() -> None:
    assert mask_token("EAAB0123456789abcdef4f2c") == "EAAB…4f2c"
    assert mask_token("short") == "…"


def test_rejected_customers_stay_rejected_until_their_secret_changes(
    secrets: CountingSecrets, cache: SQLiteCache
) -> None:
    for name in ("acme", "globex", "initech"):
        secrets.put_secret(name, f"EAA{name}")
    creds = CredentialsManager(secrets, cache)
    for name in ("acme", "globex", "initech"):
        creds.token(name)
    assert creds.rejected_among(["acme", "globex", "initech"]) == set()
    assert creds.mark_rejected("acme") is True
    assert creds.mark_rejected("globex") is True
    assert creds.mark_rejected("acme") is False, "already marked for this version"
    assert creds.rejected_among(["acme", "globex", "initech"]) == {"acme", "globex"}
    assert creds.rejected_among(["acme"]) == {"acme"} and creds.rejected_among(["initech"]) == set()
    creds.set_token("globex", "EAAglobexNew")  # a new version, marker expired ...
    assert creds.rejected_among(["acme", "globex", "initech"]) == {"acme"}
    creds.token("globex")  # ... and a new marker written: still not the rejected version
    assert creds.rejected_among(["globex", "acme"]) == {"acme"}


class CountingCache(SQLiteCache):
    """The real SQLite cache, counting single-key reads."""

    gets = 0

    def get(self, key: str) -> str | None:
        self.gets += 1
        return super().get(key)


def test_prepare_loads_a_batch_and_its_check_stands_in_for_the_next_request_once(
    tmp_path: Path, secrets: CountingSecrets
) -> None:
    cache = CountingCache(tmp_path / "counted.db")
    names = ["acme", "globex", "initech"]
    for name in names:
        secrets.put_secret(name, f"EAA{name}")
    now = [100.0]
    creds = CredentialsManager(secrets, cache, clock=lambda: now[0], shared_refresh=False)
    creds.prepare([*names, "nobody"])  # no secret for "nobody": left for token() to report
    assert secrets.reads == 4
    for name in names:
        marker = Marker.parse(cache.get_many([marker_key(name)])[0])
        assert marker is not None and marker.version == secrets.get_secret(name).version
    secrets.reads = 0
    assert [creds.token(name).get_secret_value() for name in names] == ["EAAacme", "EAAglobex", "EAAinitech"]
    assert (secrets.reads, cache.gets) == (0, 0), "the prepared check stands in for the marker read"
    creds.expire("acme")
    assert creds.token("acme").get_secret_value() == "EAAacme"
    assert secrets.reads == 1 and cache.gets > 0, "the stand-in served once; the next request checks again"
    with pytest.raises(MissingCredentialsError):
        creds.token("nobody")


def test_a_prepared_check_goes_stale(tmp_path: Path, secrets: CountingSecrets) -> None:
    cache = CountingCache(tmp_path / "counted.db")
    secrets.put_secret("acme", "EAAone")
    now = [100.0]
    creds = CredentialsManager(secrets, cache, clock=lambda: now[0], shared_refresh=False)
    creds.prepare(["acme"])
    secrets.put_secret("acme", "EAAtwo")
    cache.delete(marker_key("acme"))  # rotated while the batch waited (on throttles, say) ...
    now[0] += 10
    assert creds.token("acme").get_secret_value() == "EAAtwo", "... so the old check no longer stands"


def test_prepare_reads_the_tokens_a_batch_lacks_in_one_bulk_read_of_a_remote_store(
    tmp_path: Path, secrets: CountingSecrets
) -> None:
    cache = CountingCache(tmp_path / "counted.db")
    for name, token in (("acme", "EAAone"), ("globex", "EAAtwo"), ("initech", "EAAthree")):
        secrets.put_secret(name, token)
    creds = CredentialsManager(secrets, cache, shared_refresh=True)  # as for AWS Secrets Manager
    creds.token("acme")  # held, and current
    secrets.bulk = []
    creds.prepare(["acme", "globex", "initech", "nobody"])
    assert secrets.bulk == [["globex", "initech", "nobody"]], "one bulk read (BatchGetSecretValue) of what is not held"
    reads, gets = secrets.reads, cache.gets
    assert [creds.token(name).get_secret_value() for name in ("acme", "globex", "initech")] == [
        "EAAone",
        "EAAtwo",
        "EAAthree",
    ]
    assert (secrets.reads, cache.gets) == (reads, gets), "the batch's read and check stand in for each request's"
    assert Marker.parse(cache.get(marker_key("globex"))) is not None, "the markers missing were written"
    with pytest.raises(MissingCredentialsError, match="nobody"):
        creds.token("nobody")  # what the bulk read left out is read alone, and says why
