"""The Gateway deployment: FastAPI under @serve.ingress, the only HTTP entry of the application."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI
from ray import serve

from app.api import create_api
from app.availability import ReplicaWatcher
from app.pools import POOL_KINDS
from app.registry import ModelRegistry, Pool, identity_of
from recipes.rendered import AppArgs, GatewayConfig, RolloutRouting

logger = logging.getLogger("ray.serve")


@serve.deployment(name="Gateway")
@serve.ingress()
class Gateway:
    def __init__(self, args: AppArgs, handles: dict[str, Any]):
        self.args = args
        specs = [launched.recipe for launched in args.pools]
        clients = {s.id: POOL_KINDS[s.engine.kind].client(s, handles[s.id]) for s in specs}
        self.registry = ModelRegistry(specs, clients)
        self.watcher = ReplicaWatcher(serve.get_replica_context().app_name, clients).start()

    def __del__(self) -> None:
        self.watcher.stop()

    def reconfigure(self, user_config: dict[str, Any] | None) -> None:
        """Serve calls this with the Gateway's `user_config` (ops.rollout sets it): the
        rollouts in progress. The Gateway is reconfigured in place, never restarted."""
        config = GatewayConfig.model_validate(user_config or {})
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
        return create_api(self.registry, self.args.gateway)
