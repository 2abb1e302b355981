"""The Gateway deployment: FastAPI under @serve.ingress, the only HTTP entry of the application."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI
from ray import serve

from app.api import create_api
from app.auth import KeyRing
from app.availability import ReplicaWatcher
from app.pools import POOL_KINDS
from app.registry import ModelRegistry, Pool, identity_of
from deployments.common.ports import bind_replica_grpc_to_node
from recipes.rendered import AppArgs, GatewayConfig, RolloutRouting
from recipes.tenants import AuthSpec, is_loopback
from telemetry.logs import quiet_client_errors

logger = logging.getLogger("ray.serve")


@serve.deployment(name="Gateway")
@serve.ingress()
class Gateway:
    def __init__(self, args: AppArgs, handles: dict[str, Any]):
        bind_replica_grpc_to_node()
        self.args = args
        quiet_client_errors()
        specs = [launched.recipe for launched in args.pools]
        clients = {s.id: POOL_KINDS[s.engine.kind].client(s, handles[s.id]) for s in specs}
        self.registry = ModelRegistry(specs, clients)
        self.ring = self._key_ring(args.gateway.auth)
        self.watcher = ReplicaWatcher(serve.get_replica_context().app_name, clients).start()

    def _key_ring(self, auth: AuthSpec) -> KeyRing:
        """The keys of this auth source; a configured source that fails to load fails the
        replica (a keyed Gateway never falls back to open)."""
        keys = auth.load()
        if keys is None and not is_loopback(self.args.gateway.host):
            raise ValueError(f"a Gateway on {self.args.gateway.host} needs API keys")
        if keys is None:
            logger.warning(
                "NO API KEYS: this Gateway answers every caller (allowed only on %s)",
                self.args.gateway.host,
                extra={"event": "auth_open"},
            )
        else:
            logger.info(
                "API keys loaded: %d key(s), %d tenant(s)",
                len(keys.keys),
                len({k.tenant for k in keys.keys}),
                extra={"event": "auth_keys"},
            )
        return KeyRing(keys, replicas=self.args.gateway.num_replicas)

    def __del__(self) -> None:
        self.watcher.stop()

    def reconfigure(self, user_config: dict[str, Any] | None) -> None:
        """Serve calls this with the Gateway's `user_config` (ops.rollout sets it): the
        rollouts in progress. The Gateway is reconfigured in place, never restarted."""
        config = GatewayConfig.model_validate(user_config or {})
        self.ring = self._key_ring(config.auth or self.args.gateway.auth)
        self.registry.set_rollouts([(r, self._candidate(r)) for r in config.rollouts])
        logger.info(
            "gateway reconfigured",
            extra={
                "event": "rollouts",
                "rollouts": [
                    f"{r.current}->{r.candidate_name} {r.mode} {r.weight:g}"
                    for r in config.rollouts
                ],
            },
        )

    @staticmethod
    def _candidate(routing: RolloutRouting) -> Pool:
        spec = routing.candidate.recipe
        # ops.rollout routes to a candidate only once its application runs; no existence check
        # here, so a reconfigure never fails on the controller's view lagging behind.
        handle = serve.get_deployment_handle(
            routing.candidate_name, app_name=routing.candidate_app, _check_exists=False
        )
        client = POOL_KINDS[spec.engine.kind].client(spec, handle)
        return Pool(spec=spec, client=client, identity=identity_of(spec, routing.candidate_name))

    def __serve_build_asgi_app__(self) -> FastAPI:
        # Built here, in the replica, so routes reach the registry without pickling the app.
        return create_api(self.registry, self.args.gateway, lambda: self.ring)
