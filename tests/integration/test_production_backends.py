"""The whole tool on production backends: a real redis-server, DynamoDB and Secrets Manager on moto's
server over HTTP, and the Graph API emulator. Rotation end to end, and each backend's bad input."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

from motion_meta_cli.app import AppHandler
from motion_meta_cli.config import load_settings
from motion_meta_cli.emulator import EmulatorConfig, GraphEmulator, default_directory, derived_user
from tests.integration.conftest import MotoServer, RedisServer, free_port
from tests.integration.helpers import invoke_cli

pytestmark = pytest.mark.integration

OLD = "EAArotationOldToken0000000000"
NEW = "EAArotationNewToken1111111111"


@pytest.fixture
def emulator() -> Iterator[GraphEmulator]:
    with GraphEmulator(EmulatorConfig(users=default_directory(accept_any_token=True))) as server:
        yield server


@pytest.fixture
def production_env(
    redis_server: RedisServer, moto_server: MotoServer, emulator: GraphEmulator, monkeypatch: pytest.MonkeyPatch
) -> dict[str, str]:
    env = {
        "MOTION_META_CACHE_URL": redis_server.url,
        "MOTION_META_STORE_URL": "dynamodb://motion-meta-test",
        "MOTION_META_SECRETS_URL": "aws-secretsmanager://motion-meta/test/",
        "META_GRAPH_URL": emulator.url,
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


def _per_user(emulator: GraphEmulator) -> dict[str, int]:
    return dict(emulator.stats()["per_user"])


def test_rotation_end_to_end(tmp_path: Path, production_env: dict[str, str], emulator: GraphEmulator) -> None:
    assert invoke_cli("store", "init").stdout.startswith("created DynamoDB table motion-meta-test")
    assert "already exists" in invoke_cli("store", "init").stdout
    assert invoke_cli("customers", "add", "acme").code == 0
    assert invoke_cli("credentials", "set", "--customer", "acme", input=OLD).code == 0
    old_id, new_id = derived_user(OLD).id, derived_user(NEW).id

    with AppHandler(load_settings()) as app:  # a long-running instance
        assert app.fetch("acme").ok
        assert _per_user(emulator) == {old_id: 1}

        # The service that owns tokens: new secret version first ...
        boto3.client("secretsmanager").put_secret_value(
            SecretId="motion-meta/test/acme", SecretString=json.dumps({"access_token": NEW})
        )
        assert app.fetch("acme").ok
        assert _per_user(emulator) == {old_id: 2}, "the marker is unchanged, so the held token is still used"

        # ... then expire the marker (here from another process, through the CLI).
        assert invoke_cli("credentials", "expire", "--customer", "acme").code == 0
        result = app.fetch("acme")
        assert result.ok and result.user is not None and result.user.id == new_id
        assert _per_user(emulator) == {old_id: 2, new_id: 1}, "the next request used the new token"

    shown = json.loads(invoke_cli("credentials", "show", "--customer", "acme", "--json").stdout)
    assert shown["credentials"][0]["marker"] == "current"
    table = boto3.client("dynamodb").scan(TableName="motion-meta-test")["Items"]
    assert not any(OLD in json.dumps(item) or NEW in json.dumps(item) for item in table), "no token in stored items"
    fetched = invoke_cli("fetch", "--customer", "acme", "--json")
    assert json.loads(fetched.stdout)["id"] == new_id


def test_a_rejected_token_is_reread_once_from_secrets_manager(
    tmp_path: Path, production_env: dict[str, str], emulator: GraphEmulator
) -> None:
    invoke_cli("store", "init")
    invoke_cli("customers", "add", "acme")
    secrets = boto3.client("secretsmanager")
    secrets.create_secret(Name="motion-meta/test/acme", SecretString="EAAshort")  # emulator rejects: too short
    with AppHandler(load_settings()) as app:
        assert app.fetch("acme").error is not None
        secrets.put_secret_value(SecretId="motion-meta/test/acme", SecretString=NEW)
        result = app.fetch("acme")  # marker still names the old version; the 190 makes it re-read
        assert result.ok and result.user is not None and result.user.id == derived_user(NEW).id


@pytest.mark.parametrize(
    ("setup", "code", "message"),
    [
        ("no_table", 3, "DynamoDB table 'motion-meta-test' does not exist; run `motion-meta store init`"),
        ("no_secret", 3, "no secret 'motion-meta/test/acme' in AWS Secrets Manager"),
        ("json_without_token", 3, '"access_token"'),
        ("redis_down", 8, "cannot reach Redis"),
        ("no_aws_credentials", 3, "no AWS credentials"),
    ],
)
def test_backend_bad_input_gets_one_line_and_its_exit_code(
    tmp_path: Path,
    production_env: dict[str, str],
    redis_server: RedisServer,
    setup: str,
    code: int,
    message: str,
) -> None:
    env: dict[str, str] = {}
    if setup != "no_table":
        invoke_cli("store", "init")
        invoke_cli("customers", "add", "acme")
    if setup in ("json_without_token", "redis_down", "no_aws_credentials"):
        value = json.dumps({"token": "EAAcanaryJsonValue000"}) if setup == "json_without_token" else OLD
        boto3.client("secretsmanager").create_secret(Name="motion-meta/test/acme", SecretString=value)
    if setup == "redis_down":
        env["MOTION_META_CACHE_URL"] = f"redis://127.0.0.1:{free_port()}/0"
    if setup == "no_aws_credentials":
        env.update(
            AWS_ACCESS_KEY_ID="",
            AWS_SECRET_ACCESS_KEY="",
            AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"),
            AWS_CONFIG_FILE=str(tmp_path / "none"),
            AWS_EC2_METADATA_DISABLED="true",
        )
    run = invoke_cli("fetch", "--customer", "acme", env=env)
    assert run.code == code, run.stderr
    assert message in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1
    assert "EAAcanaryJsonValue000" not in run.stderr
