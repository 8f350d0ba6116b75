"""The embedded secrets store: one JSON file, mode 0600, written atomically under a file lock."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import tempfile
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from motion_meta_cli.config import DEMO_CUSTOMER
from motion_meta_cli.errors import ConfigError, MissingCredentialsError, MotionMetaError
from motion_meta_cli.models import iso_utc, utc_now
from motion_meta_cli.storage.base import SecretRecord

FILE_MODE = 0o600


class LocalSecretsStore:
    """`SecretsStore` in a local file that only its owner can read.

        secrets = LocalSecretsStore(home / "secrets.json")
        version = secrets.put_secret("acme", token)
        secrets.get_secret("acme").token.get_secret_value()

    Every write gives the token a new random version id, which the credentials manager keeps in the
    cache as the validity marker (the token itself never leaves this file).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock_path = path.with_name(path.name + ".lock")
        # The parsed file, keyed on what stat() says about it: many customers, one parse per change.
        self._parsed: tuple[tuple[int, int, int], dict[str, Any]] | None = None
        self._parsed_lock = threading.Lock()

    def get_secret(self, customer: str) -> SecretRecord:
        """The current token of `customer`; raises MissingCredentialsError."""
        return self._record(customer, self._read())

    def _record(self, customer: str, data: dict[str, Any]) -> SecretRecord:
        entry = self._entry(customer, data)
        if entry is None:
            demo = " (or set META_ACCESS_TOKEN, the demo customer's token)" if customer == DEMO_CUSTOMER else ""
            raise MissingCredentialsError(
                f"no access token stored for customer {customer!r}; "
                f"run `motion-meta credentials set --customer {customer}`{demo}"
            )
        return SecretRecord(token=SecretStr(entry["token"]), version=str(entry.get("version", "")))

    def get_secrets(self, customers: Sequence[str]) -> dict[str, SecretRecord]:
        """`get_secret` of each that has a token: the file is read (and parsed) once."""
        data, records = self._read(), {}
        for customer in customers:
            with contextlib.suppress(MotionMetaError):
                records[customer] = self._record(customer, data)
        return records

    def _entry(self, customer: str, data: dict[str, Any]) -> dict[str, Any] | None:
        """`customer`'s entry in `data`, `{"token": "...", "version": ..., "updated_at": ...}`, or None when there
        is none; any other shape is an error naming the customer (never showing what is there: it may be a
        token)."""
        entry = data.get(customer)
        if entry is None:
            return None
        if not isinstance(entry, dict) or not isinstance(entry.get("token"), str):
            raise ConfigError(
                f'the secrets file {self.path} holds something other than {{"token": "..."}} for customer '
                f"{customer!r}; store the token again with `motion-meta credentials set --customer {customer}`"
            )
        return entry if entry["token"].strip() else None

    def put_secret(self, customer: str, token: str) -> str:
        """Store a new current token for `customer` and return its version id."""
        return self.put_secrets({customer: token})[customer]

    def put_secrets(self, tokens: dict[str, str]) -> dict[str, str]:
        """Store many tokens in one rewrite of the file (one per token would be quadratic); their versions."""
        versions = {customer: secrets.token_hex(12) for customer in tokens}
        with self._locked():
            data = dict(self._read())
            now = iso_utc(utc_now())
            for customer, token in tokens.items():
                data[customer] = {"token": token, "version": versions[customer], "updated_at": now}
            self._write(data)
        return versions

    def close(self) -> None:
        """Nothing to release: the file is opened per read and write."""

    def has_secret(self, customer: str) -> bool:
        """Whether a token is stored for `customer`."""
        return self._entry(customer, self._read()) is not None

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(self._lock_path, os.O_CREAT | os.O_RDWR, FILE_MODE)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _read(self) -> dict[str, Any]:
        """The file's content, parsed once per change of the file: shared, so never change it (copy it)."""
        try:
            info = self.path.stat()
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise ConfigError(f"cannot read the secrets file {self.path}: {exc.strerror}") from None
        key = (info.st_mtime_ns, info.st_size, info.st_ino)
        with self._parsed_lock:
            if self._parsed is not None and self._parsed[0] == key:
                return self._parsed[1]
        data = self._parse()
        with self._parsed_lock:
            self._parsed = (key, data)
        return data

    def _parse(self) -> dict[str, Any]:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise ConfigError(f"cannot read the secrets file {self.path}: {exc.strerror}") from None
        try:
            data = json.loads(text) if text.strip() else {}
        except json.JSONDecodeError:
            data = None
        if data is None:
            # Never echo the content: it holds tokens.
            raise ConfigError(f"the secrets file {self.path} is not valid JSON; fix or remove it")
        if not isinstance(data, dict):
            raise ConfigError(
                f"the secrets file {self.path} must be a JSON object of customer -> "
                '{"token": "..."}; fix or remove it'
            )
        return data

    def _write(self, data: dict[str, Any]) -> None:
        fd, tmp = tempfile.mkstemp(prefix=".secrets-", dir=self.path.parent)  # mkstemp creates with 0600
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(data, handle, indent=2, sort_keys=True)
                handle.flush()
                os.fsync(handle.fileno())
            os.chmod(tmp, FILE_MODE)
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
