"""API keys at the ingress: who is calling (401), may they (403), are they within their quotas
(429 + Retry-After). Plain ASGI, so a refused request costs no body read and no pool call.

A Gateway without keys runs open (the embedded default on 127.0.0.1): every request is the
tenant `open` with no quota. Quotas are counted per Gateway replica; each replica enforces its
share (limit / replicas, rounded up), which is the key's limit while the load balancer spreads
requests evenly.
"""

from __future__ import annotations

import collections
import math
import time
from dataclasses import dataclass, field

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from app.errors import serving_error_response
from deployments.common.errors import Forbidden, RateLimited, ServingError, Unauthorized
from recipes.tenants import ApiKey, KeysFile, hash_key
from recipes.tenants import Scope as KeyScope

OPEN_TENANT = "open"
WINDOW_S = 60.0

# Paths anyone may call: probes (a load balancer has no key) and the API's own schema.
PUBLIC_PATHS = frozenset({"/health", "/ready", "/openapi.json", "/docs", "/docs/oauth2-redirect"})
SCOPED_PATHS: dict[str, KeyScope] = {"/metrics": "metrics", "/v1/feedback": "feedback"}


@dataclass
class Caller:
    """Who sent a request: the key (None when the Gateway runs open) and its tenant."""

    tenant: str
    key: ApiKey | None = None

    @property
    def key_id(self) -> str:
        return self.key.id if self.key else OPEN_TENANT

    def check_model(self, model: str, canonical: str, pool_id: str) -> None:
        """403 unless the key allows the model (by the name asked for or its canonical id)
        and the pool."""
        if self.key is None:
            return
        if not (self.key.allows_model(model) or self.key.allows_model(canonical)):
            raise Forbidden(f"key '{self.key.id}' may not use model '{model}'", param="model")
        if not self.key.allows_pool(pool_id):
            raise Forbidden(f"key '{self.key.id}' may not use pool '{pool_id}'", param="model")


OPEN_CALLER = Caller(tenant=OPEN_TENANT)


@dataclass
class Quota:
    """One key's use in the last minute (on this replica) and its requests in flight."""

    rpm: int | None
    tpm: int | None
    max_concurrent: int | None
    requests: collections.deque[float] = field(default_factory=collections.deque)
    tokens: collections.deque[tuple[float, int]] = field(default_factory=collections.deque)
    token_sum: int = 0
    in_flight: int = 0

    def _expire(self, now: float) -> None:
        while self.requests and self.requests[0] <= now - WINDOW_S:
            self.requests.popleft()
        while self.tokens and self.tokens[0][0] <= now - WINDOW_S:
            self.token_sum -= self.tokens.popleft()[1]

    def admit(self, now: float) -> tuple[str, float] | None:
        """None if the request may start (and it is counted), else why not and the seconds
        until it may."""
        self._expire(now)
        if self.max_concurrent is not None and self.in_flight >= self.max_concurrent:
            return f"{self.in_flight} requests in flight (limit {self.max_concurrent})", 1.0
        if self.rpm is not None and len(self.requests) >= self.rpm:
            wait = self.requests[0] + WINDOW_S - now
            return f"{len(self.requests)} requests in the last minute (limit {self.rpm})", wait
        if self.tpm is not None and self.token_sum >= self.tpm:
            wait = self.tokens[0][0] + WINDOW_S - now
            return f"{self.token_sum} tokens in the last minute (limit {self.tpm})", wait
        self.requests.append(now)
        self.in_flight += 1
        return None

    def release(self) -> None:
        self.in_flight -= 1

    def charge(self, tokens: int, now: float) -> None:
        if tokens > 0:
            self.tokens.append((now, tokens))
            self.token_sum += tokens


def _share(limit: int | None, replicas: int) -> int | None:
    return None if limit is None else max(1, math.ceil(limit / replicas))


class KeyRing:
    """The keys this Gateway accepts (by hash) and their quotas."""

    def __init__(self, keys: KeysFile | None, replicas: int = 1):
        self.open = keys is None
        self._by_hash = {k.sha256: k for k in keys.keys} if keys else {}
        self.quotas = {
            k.id: Quota(
                _share(k.rpm, replicas), _share(k.tpm, replicas), _share(k.max_concurrent, replicas)
            )
            for k in (keys.keys if keys else ())
        }

    def caller(self, authorization: str | None) -> Caller:
        if self.open:
            return OPEN_CALLER
        if not authorization:
            raise Unauthorized(
                "Missing API key: send it as 'Authorization: Bearer <key>'", code="missing_api_key"
            )
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise Unauthorized("The Authorization header must be 'Bearer <key>'")
        key = self._by_hash.get(hash_key(token))
        if key is None:
            raise Unauthorized("Incorrect API key provided")
        return Caller(tenant=key.tenant, key=key)


def required_scope(path: str) -> KeyScope | None:
    """The scope a path needs; None for a public path."""
    if path in PUBLIC_PATHS:
        return None
    return SCOPED_PATHS.get(path, "inference")


class AuthMiddleware:
    """Authenticates every non-public request and holds its quota for the request's life
    (a stream's included); the routes check models and pools (they know them after parsing)."""

    def __init__(self, app: ASGIApp, ring_of):
        self.app = app
        self.ring_of = ring_of  # () -> KeyRing: the Gateway swaps its ring on reconfigure

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        ring: KeyRing = self.ring_of()
        state = scope.setdefault("state", {})
        state["caller"] = OPEN_CALLER
        needed = required_scope(scope["path"])
        if needed is None or ring.open:
            await self.app(scope, receive, send)
            return
        caller = OPEN_CALLER
        try:
            caller = ring.caller(Headers(scope=scope).get("authorization"))
            assert caller.key is not None
            if needed not in caller.key.scopes:
                raise Forbidden(
                    f"key '{caller.key.id}' lacks the '{needed}' scope for {scope['path']}",
                    code="missing_scope",
                )
            quota = ring.quotas[caller.key.id]
            refused = quota.admit(time.monotonic())
            if refused is not None:
                raise _rate_limited(caller.key, refused)
        except ServingError as exc:
            state["error_type"] = exc.code or exc.error_type
            state["caller"] = caller  # a refused known key still counts for its tenant
            await serving_error_response(exc)(scope, receive, send)
            return
        state["caller"], state["quota"] = caller, quota
        try:
            await self.app(scope, receive, send)
        finally:
            quota.release()


def _rate_limited(key: ApiKey, refused: tuple[str, float]) -> RateLimited:
    why, wait_s = refused
    return RateLimited(f"key '{key.id}' is over its quota: {why}", retry_after_s=max(1.0, wait_s))
