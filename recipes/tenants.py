"""API keys and tenants: who may call the platform, on which models, at what rate.

Keys are data: a YAML document (a file on the Gateway's node, or the content of an environment
variable that a secret store fills) validated here. It holds only the sha256 of each key, never
the key: keys are random 32-byte tokens (`python -m ops.keys new`), so a fast hash is as safe as
a slow one and costs microseconds per request.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
from pathlib import Path
from typing import Literal

import yaml
from pydantic import Field, model_validator

from recipes.engines import Strict
from recipes.paths import PROJECT_ROOT

Scope = Literal["inference", "metrics", "feedback"]
KEY_PREFIX = "sk-ip-"


def hash_key(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class ApiKey(Strict):
    """One key: its tenant, what it may reach and its quotas (None: unlimited)."""

    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$", description="Name in logs")
    tenant: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$", description="Label in metrics")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="sha256 hex of the bearer token")
    scopes: list[Scope] = Field(default_factory=lambda: ["inference"], min_length=1)
    models: list[str] = Field(
        default_factory=lambda: ["*"], min_length=1, description="Model ids or aliases; * = all"
    )
    pools: list[str] = Field(
        default_factory=lambda: ["*"], min_length=1, description="Pool (recipe) ids; * = all"
    )
    rpm: int | None = Field(None, ge=1, description="Requests per minute")
    tpm: int | None = Field(None, ge=1, description="Tokens per minute (prompt + completion)")
    max_concurrent: int | None = Field(None, ge=1, description="Requests in flight at once")

    def allows_model(self, model: str) -> bool:
        return "*" in self.models or model in self.models

    def allows_pool(self, pool: str) -> bool:
        return "*" in self.pools or pool in self.pools


class KeysFile(Strict):
    keys: list[ApiKey] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique(self) -> KeysFile:
        for field in ("id", "sha256"):
            values = [getattr(k, field) for k in self.keys]
            dupes = sorted({v for v in values if values.count(v) > 1})
            if dupes:
                raise ValueError(f"key {field}s must be unique: {dupes}")
        return self


class AuthSpec(Strict):
    """Where the Gateway reads its keys. Neither set: the Gateway runs open (loopback only)."""

    keys_file: str | None = Field(
        None, description="YAML keys file on the Gateway's node (relative: to the project root)"
    )
    keys_env: str | None = Field(
        None,
        pattern=r"^[A-Z_][A-Z0-9_]*$",
        description="Environment variable holding the keys YAML (a secret store fills it)",
    )

    @property
    def configured(self) -> bool:
        return bool(self.keys_file or self.keys_env)

    def load(self) -> KeysFile | None:
        """The keys, or None when no source is configured. Raises ValueError when a source is
        configured but missing, empty or invalid: a keyed Gateway never falls back to open."""
        if not self.configured:
            return None
        if self.keys_env:
            text = os.environ.get(self.keys_env)
            if not text:
                raise ValueError(f"auth.keys_env: environment variable {self.keys_env} is not set")
            where = f"${self.keys_env}"
        else:
            path = Path(self.keys_file or "")
            path = path if path.is_absolute() else PROJECT_ROOT / path
            if not path.is_file():
                raise ValueError(f"auth.keys_file: {path} does not exist")
            text, where = path.read_text(), str(path)
        try:
            return KeysFile.model_validate(yaml.safe_load(text))
        except Exception as exc:
            raise ValueError(f"keys from {where} are not valid: {exc}") from None
