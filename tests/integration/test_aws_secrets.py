"""AwsSecretsStore against moto's Secrets Manager over real HTTP."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest

from motion_meta_cli.credentials import CredentialsManager, Marker, marker_key
from motion_meta_cli.errors import BackendUnavailableError, ConfigError, MissingCredentialsError
from motion_meta_cli.storage.aws import aws_client
from motion_meta_cli.storage.aws_secrets import AwsSecretsStore
from motion_meta_cli.storage.sqlite_cache import SQLiteCache
from tests.integration.conftest import MotoServer, free_port

pytestmark = pytest.mark.integration

PREFIX = "motion-meta/prod/"
CANARY = "CANARY-d41d8cd98f00b204"


@pytest.fixture
def sm(moto_server: MotoServer) -> Any:
    """A plain boto3 client on the moto server, to set secrets up the way other tools would."""
    return aws_client("secretsmanager")


@pytest.fixture
def store(moto_server: MotoServer) -> AwsSecretsStore:
    return AwsSecretsStore(PREFIX)


def test_the_secret_name_is_prefix_plus_customer(store: AwsSecretsStore) -> None:
    assert store.secret_name("acme") == "motion-meta/prod/acme"


def test_a_plain_value_is_the_token(store: AwsSecretsStore, sm: Any) -> None:
    created = sm.create_secret(Name=PREFIX + "acme", SecretString="  EAAplain123\n")

    record = store.get_secret("acme")

    assert record.token.get_secret_value() == "EAAplain123"
    assert record.version == created["VersionId"]
    assert "EAAplain123" not in repr(record)


def test_a_binary_value_is_read_as_utf8(store: AwsSecretsStore, sm: Any) -> None:
    sm.create_secret(Name=PREFIX + "acme", SecretBinary=b"EAAbinary")

    assert store.get_secret("acme").token.get_secret_value() == "EAAbinary"


def test_a_json_secret_keeps_its_other_keys_across_put(store: AwsSecretsStore, sm: Any) -> None:
    sm.create_secret(Name=PREFIX + "acme", SecretString=json.dumps({"access_token": "EAAold", "app_id": "42"}))
    assert store.get_secret("acme").token.get_secret_value() == "EAAold"

    version = store.put_secret("acme", "EAAnew")

    stored = sm.get_secret_value(SecretId=PREFIX + "acme")
    assert json.loads(stored["SecretString"]) == {"access_token": "EAAnew", "app_id": "42"}
    assert stored["VersionId"] == version
    assert store.get_secret("acme").token.get_secret_value() == "EAAnew"


def test_a_plain_secret_stays_plain_across_put(store: AwsSecretsStore, sm: Any) -> None:
    sm.create_secret(Name=PREFIX + "acme", SecretString="EAAold")

    store.put_secret("acme", "EAAnew")

    assert sm.get_secret_value(SecretId=PREFIX + "acme")["SecretString"] == "EAAnew"


@pytest.mark.parametrize(
    "value",
    [
        json.dumps({"token": CANARY}),
        json.dumps({"access_token": "", "note": CANARY}),
        json.dumps({"access_token": 12, "note": CANARY}),
        '{"access_token": "' + CANARY,
        f"{CANARY} second-word",
        "   ",
    ],
    ids=["other-key", "empty-token", "not-a-string", "broken-json", "two-words", "blank"],
)
def test_a_value_without_a_usable_token_is_missing_credentials_without_the_value(
    store: AwsSecretsStore, sm: Any, value: str
) -> None:
    sm.create_secret(Name=PREFIX + "acme", SecretString=value)

    with pytest.raises(MissingCredentialsError) as caught:
        store.get_secret("acme")

    text = str(caught.value)
    assert "'motion-meta/prod/acme'" in text
    assert '"access_token"' in text
    assert "\n" not in text
    assert CANARY not in text
    assert caught.value.__cause__ is None


def test_a_missing_secret_is_missing_credentials_naming_it(store: AwsSecretsStore) -> None:
    with pytest.raises(MissingCredentialsError) as caught:
        store.get_secret("acme")

    assert str(caught.value) == (
        "no secret 'motion-meta/prod/acme' in AWS Secrets Manager for customer 'acme'; "
        "create it or run `motion-meta credentials set --customer acme`"
    )
    assert caught.value.__cause__ is None


def test_a_secret_scheduled_for_deletion_is_missing_and_cannot_be_put(store: AwsSecretsStore, sm: Any) -> None:
    sm.create_secret(Name=PREFIX + "acme", SecretString="EAAold")
    sm.delete_secret(SecretId=PREFIX + "acme", RecoveryWindowInDays=7)

    assert store.has_secret("acme") is False
    with pytest.raises(MissingCredentialsError, match="no secret 'motion-meta/prod/acme'"):
        store.get_secret("acme")
    with pytest.raises(ConfigError, match="scheduled for deletion; restore it") as caught:
        store.put_secret("acme", "EAAnew")
    assert "EAAnew" not in str(caught.value)


def test_put_creates_then_updates_with_a_new_version(store: AwsSecretsStore, sm: Any) -> None:
    first = store.put_secret("acme", "EAAfirst")

    created = sm.get_secret_value(SecretId=PREFIX + "acme")
    assert json.loads(created["SecretString"]) == {"access_token": "EAAfirst"}
    assert store.get_secret("acme").version == first

    second = store.put_secret("acme", "EAAsecond")

    assert second != first
    record = store.get_secret("acme")
    assert (record.token.get_secret_value(), record.version) == ("EAAsecond", second)
    stages = sm.describe_secret(SecretId=PREFIX + "acme")["VersionIdsToStages"]
    assert "AWSCURRENT" in stages[second]
    assert "AWSPREVIOUS" in stages[first]


def test_get_reads_awscurrent_even_when_a_pending_version_exists(store: AwsSecretsStore, sm: Any) -> None:
    current = store.put_secret("acme", "EAAcurrent")
    pending = sm.put_secret_value(
        SecretId=PREFIX + "acme",
        SecretString=json.dumps({"access_token": "EAApending"}),
        VersionStages=["AWSPENDING"],
    )["VersionId"]
    assert pending != current

    record = store.get_secret("acme")

    assert (record.token.get_secret_value(), record.version) == ("EAAcurrent", current)


@pytest.mark.parametrize("token", ["", "EAA with space", "EAA\n", "\tEAA"])
def test_put_refuses_a_token_that_is_empty_or_has_whitespace(store: AwsSecretsStore, token: str) -> None:
    with pytest.raises(ValueError) as caught:
        store.put_secret("acme", token)

    assert "EAA" not in str(caught.value)
    assert store.has_secret("acme") is False


def test_has_secret(store: AwsSecretsStore, sm: Any) -> None:
    assert store.has_secret("acme") is False
    sm.create_secret(Name=PREFIX + "empty")  # a secret with no value yet
    assert store.has_secret("empty") is False

    store.put_secret("acme", "EAAtoken")
    store.put_secret("empty", "EAAtoken")

    assert store.has_secret("acme") is True
    assert store.has_secret("empty") is True
    assert store.get_secret("empty").token.get_secret_value() == "EAAtoken"


def test_missing_aws_credentials_are_a_config_error(
    moto_server: MotoServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    for name in ("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("AWS_WEB_IDENTITY_TOKEN_FILE", raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")

    with pytest.raises(ConfigError, match="no AWS credentials for Secrets Manager"):
        AwsSecretsStore(PREFIX).get_secret("acme")


def test_an_unreachable_endpoint_is_backend_unavailable(
    moto_server: MotoServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    store = AwsSecretsStore(PREFIX, client=aws_client("secretsmanager", max_attempts=1))

    with pytest.raises(BackendUnavailableError, match="cannot reach Secrets Manager"):
        store.get_secret("acme")
    with pytest.raises(BackendUnavailableError):
        store.put_secret("acme", "EAAtoken")


def test_an_invalid_prefix_is_a_config_error(moto_server: MotoServer) -> None:
    with pytest.raises(ConfigError, match="invalid AWS Secrets Manager prefix"):
        AwsSecretsStore("motion meta/")


def test_credentials_manager_over_secrets_manager_follows_rotation(
    store: AwsSecretsStore, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="motion_meta_cli")
    first = store.put_secret("acme", CANARY + "-1")
    cache = SQLiteCache(tmp_path / "cache.db")
    try:
        here, there = CredentialsManager(store, cache), CredentialsManager(store, cache)
        assert here.token("acme").get_secret_value() == CANARY + "-1"
        assert there.token("acme").get_secret_value() == CANARY + "-1"
        assert _marker_version(cache) == first

        second = store.put_secret("acme", CANARY + "-2")
        # The marker still names the old version, so both keep the token they hold.
        assert there.token("acme").get_secret_value() == CANARY + "-1"

        assert here.expire("acme") is True
        assert there.token("acme").get_secret_value() == CANARY + "-2"
        assert here.token("acme").get_secret_value() == CANARY + "-2"
        assert _marker_version(cache) == second
    finally:
        cache.close()
    assert CANARY not in caplog.text


def _marker_version(cache: SQLiteCache) -> str | None:
    marker = Marker.parse(cache.get(marker_key("acme")))
    return None if marker is None else marker.version


def test_many_tokens_are_put_each_as_its_own_secret(store: AwsSecretsStore) -> None:
    versions = store.put_secrets({"alpha": "EAAalphaBulk000000000", "beta": "EAAbetaBulk0000000000"})
    assert set(versions) == {"alpha", "beta"}
    for customer in ("alpha", "beta"):
        record = store.get_secret(customer)
        assert record.version == versions[customer]
        assert record.token.get_secret_value() == f"EAA{customer}Bulk".ljust(21, "0")


def test_a_batch_of_secrets_is_read_twenty_per_call_leaving_out_what_cannot_be_used(
    store: AwsSecretsStore, sm: Any
) -> None:
    names = [f"c{n:02d}" for n in range(45)]
    for name in names:
        sm.create_secret(Name=PREFIX + name, SecretString=json.dumps({"access_token": f"EAA{name}token"}))
    sm.create_secret(Name=PREFIX + "blank", SecretString="   ")
    sm.create_secret(Name=PREFIX + "deleted", SecretString="EAAdeleted")
    sm.delete_secret(SecretId=PREFIX + "deleted")
    calls: list[str] = []
    store._client.meta.events.register("before-call.secrets-manager", lambda model, **_: calls.append(model.name))

    records = store.get_secrets([*names, "blank", "deleted", "missing"])

    assert calls == ["BatchGetSecretValue"] * 3, "48 names: 20 + 20 + 8"
    assert sorted(records) == names
    assert all(records[name].token.get_secret_value() == f"EAA{name}token" for name in names)
    assert records["c07"].version == store.get_secret("c07").version
    for name in ("blank", "deleted", "missing"):  # each says why when read alone
        with pytest.raises((MissingCredentialsError, ConfigError)):
            store.get_secret(name)
