"""Customers' tokens in AWS Secrets Manager, one secret per customer named `prefix + customer`.

A secret holds the token either as its whole value or under `access_token` in a JSON object (so a
secret shared with other tools can keep its other keys). The AWSCURRENT version id is the validity
marker the credentials manager keeps in the cache. Values are never logged and never put in errors.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import botocore.exceptions
from pydantic import SecretStr

from motion_meta_cli.errors import ConfigError, MissingCredentialsError
from motion_meta_cli.storage.aws import aws_client, aws_errors, error_code
from motion_meta_cli.storage.base import SecretRecord

if TYPE_CHECKING:
    from mypy_boto3_secretsmanager import SecretsManagerClient
    from mypy_boto3_secretsmanager.type_defs import DescribeSecretResponseTypeDef, GetSecretValueResponseTypeDef

SERVICE = "Secrets Manager"
CURRENT = "AWSCURRENT"
TOKEN_KEY = "access_token"

# The characters Secrets Manager allows in a secret name; customer names are a subset.
_NAME_CHARS = re.compile(r"[A-Za-z0-9/_+=.@-]*")
# ResourceNotFoundException: no such secret, or no AWSCURRENT value yet.
# InvalidRequestException: on a read, the secret is scheduled for deletion.
_GONE = ("ResourceNotFoundException", "InvalidRequestException")
BATCH_READ = 20
"""The most secrets one BatchGetSecretValue call names."""


class AwsSecretsStore:
    """`SecretsStore` on AWS Secrets Manager.

        secrets = AwsSecretsStore("motion-meta/prod/")        # secret "motion-meta/prod/acme"
        version = secrets.put_secret("acme", token)           # the new AWSCURRENT VersionId
        secrets.get_secret("acme").token.get_secret_value()

    Endpoint, region and credentials come from boto3's usual configuration (see `storage.aws`);
    pass `client` to use another one, e.g. `aws_client("secretsmanager", max_attempts=1)`.
    """

    def __init__(self, prefix: str, *, client: Any | None = None) -> None:
        if not _NAME_CHARS.fullmatch(prefix):
            raise ConfigError(
                f"invalid AWS Secrets Manager prefix {prefix!r}: use letters, digits and / _ + = . @ - only"
            )
        self.prefix = prefix
        self._owns_client = client is None
        self._client: SecretsManagerClient = client if client is not None else aws_client("secretsmanager")

    def secret_name(self, customer: str) -> str:
        """The name of `customer`'s secret."""
        return self.prefix + customer

    def get_secret(self, customer: str) -> SecretRecord:
        """The AWSCURRENT token of `customer` and its VersionId; raises MissingCredentialsError."""
        name = self.secret_name(customer)
        response = self._read_current(name)
        if response is None:
            raise MissingCredentialsError(
                f"no secret {name!r} in AWS Secrets Manager for customer {customer!r}; "
                f"create it or run `motion-meta credentials set --customer {customer}`"
            )
        token = _token_in(_value_of(response, name, customer), name, customer)
        return SecretRecord(token=SecretStr(token), version=response["VersionId"])

    def get_secrets(self, customers: Sequence[str]) -> dict[str, SecretRecord]:
        """The AWSCURRENT tokens of `customers`, BATCH_READ per BatchGetSecretValue call. A secret the batch
        could not read, or whose value holds no usable token, is left out: `get_secret` says why."""
        records: dict[str, SecretRecord] = {}
        by_name = {self.secret_name(customer): customer for customer in customers}
        names = list(by_name)
        for start in range(0, len(names), BATCH_READ):
            with aws_errors(SERVICE):
                response = self._client.batch_get_secret_value(SecretIdList=names[start : start + BATCH_READ])
            for value in response.get("SecretValues", []):
                customer = by_name.get(value.get("Name", ""))
                if customer is None or "VersionId" not in value:
                    continue
                with contextlib.suppress(MissingCredentialsError):
                    token = _token_in(_raw_value(value) or "", value["Name"], customer)
                    records[customer] = SecretRecord(token=SecretStr(token), version=value["VersionId"])
        return records

    def put_secret(self, customer: str, token: str) -> str:
        """Make `token` the AWSCURRENT value of `customer`'s secret, creating it if needed; returns the VersionId.

        An existing secret keeps its format: in a JSON object only `access_token` changes, a plain
        value is replaced by the plain token. A new secret is created as `{"access_token": token}`.
        """
        if not token or any(char.isspace() for char in token):
            raise ValueError("a token must be non-empty and contain no whitespace")
        name = self.secret_name(customer)
        current = self._read_current(name)
        if current is None:
            self._refuse_if_deleted(name)
            created = self._create(name, _replace_token(None, token))
            if created is not None:
                return created
            # Created by someone else meanwhile, or it exists without a current value.
            current = self._read_current(name)
        value = _replace_token(None if current is None else _raw_value(current), token)
        with aws_errors(SERVICE):
            return self._client.put_secret_value(SecretId=name, SecretString=value)["VersionId"]

    def close(self) -> None:
        """Close the Secrets Manager client's connections, if this store created the client."""
        if self._owns_client:
            self._client.close()

    def put_secrets(self, tokens: dict[str, str]) -> dict[str, str]:
        """`put_secret` for each: Secrets Manager writes one secret per call."""
        return {customer: self.put_secret(customer, token) for customer, token in tokens.items()}

    def has_secret(self, customer: str) -> bool:
        """Whether `customer`'s secret exists, is not scheduled for deletion and has an AWSCURRENT version.

        It reads metadata only (DescribeSecret), so a value without a usable token still counts.
        """
        described = self._describe(self.secret_name(customer))
        if described is None or "DeletedDate" in described:
            return False
        return any(CURRENT in stages for stages in described.get("VersionIdsToStages", {}).values())

    def _read_current(self, name: str) -> GetSecretValueResponseTypeDef | None:
        with aws_errors(SERVICE):
            try:
                return self._client.get_secret_value(SecretId=name, VersionStage=CURRENT)
            except botocore.exceptions.ClientError as exc:
                if error_code(exc) in _GONE:
                    return None
                raise

    def _describe(self, name: str) -> DescribeSecretResponseTypeDef | None:
        with aws_errors(SERVICE):
            try:
                return self._client.describe_secret(SecretId=name)
            except botocore.exceptions.ClientError as exc:
                if error_code(exc) == "ResourceNotFoundException":
                    return None
                raise

    def _create(self, name: str, value: str) -> str | None:
        """The VersionId of the new secret, or None when a secret of that name already exists."""
        with aws_errors(SERVICE):
            try:
                return self._client.create_secret(Name=name, SecretString=value)["VersionId"]
            except botocore.exceptions.ClientError as exc:
                code = error_code(exc)
                if code == "ResourceExistsException":
                    return None
                if code != "InvalidRequestException":
                    raise
        self._refuse_if_deleted(name)
        raise ConfigError(f"AWS Secrets Manager refused to create secret {name!r} (InvalidRequestException)")

    def _refuse_if_deleted(self, name: str) -> None:
        """Raise ConfigError when `name` is scheduled for deletion: a value written now would go with it."""
        described = self._describe(name)
        if described is not None and "DeletedDate" in described:
            raise ConfigError(
                f"secret {name!r} in AWS Secrets Manager is scheduled for deletion; restore it with "
                f"`aws secretsmanager restore-secret --secret-id {name}`, then store the token again"
            )


def _raw_value(response: Mapping[str, Any]) -> str | None:
    """The secret's text, or None when it is binary and not UTF-8."""
    if "SecretString" in response:
        return str(response["SecretString"])
    try:
        return bytes(response.get("SecretBinary", b"")).decode("utf-8")
    except UnicodeDecodeError:
        return None  # the exception would carry the bytes


def _value_of(response: GetSecretValueResponseTypeDef, name: str, customer: str) -> str:
    value = _raw_value(response)
    if value is None:
        raise _unusable(name, customer, "is binary and not UTF-8 text")
    return value


def _json_object(text: str) -> dict[str, Any] | None:
    """`text` parsed as a JSON object, or None when it is not one."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        return None  # the exception carries the whole document
    return data if isinstance(data, dict) else None


def _token_in(value: str, name: str, customer: str) -> str:
    """The token a secret value holds: the value itself, or `access_token` of a JSON object."""
    text = value.strip()
    if text.startswith("{"):
        data = _json_object(text)
        if data is None:
            raise _unusable(name, customer, "starts like JSON but is not a valid JSON object")
        token = data.get(TOKEN_KEY)
        if not isinstance(token, str) or not token.strip():
            raise _unusable(name, customer, f'is a JSON object without a non-empty string "{TOKEN_KEY}"')
        text = token.strip()
    if not text:
        raise _unusable(name, customer, "is empty")
    if any(char.isspace() for char in text):
        # Whitespace inside would break the Authorization header (and land the value in an error).
        raise _unusable(name, customer, "holds more than one word, not a single token")
    return text


def _replace_token(value: str | None, token: str) -> str:
    """`value` with its token replaced by `token`, keeping a JSON object's other keys; None becomes a new object."""
    if value is None:
        return json.dumps({TOKEN_KEY: token})
    text = value.strip()
    if not text.startswith("{"):
        return token
    data = _json_object(text)
    if data is None:
        return json.dumps({TOKEN_KEY: token})
    data[TOKEN_KEY] = token
    return json.dumps(data)


def _unusable(name: str, customer: str, why: str) -> MissingCredentialsError:
    return MissingCredentialsError(
        f"secret {name!r} in AWS Secrets Manager {why}; store customer {customer!r}'s token as the "
        f'secret\'s value or under "{TOKEN_KEY}" in a JSON object'
    )
