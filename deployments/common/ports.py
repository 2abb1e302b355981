"""Serve 2.60 starts an inter-deployment gRPC server in every replica on `[::]:0`, every
interface, with no setting to change it (ray/serve/_private/replica.py). The platform binds it
to the node's own address instead: 127.0.0.1 on a loopback node, the node's (private) address in
a cluster, which is where Serve's handles reach a replica."""

from __future__ import annotations

from typing import Any


def bind_replica_grpc_to_node() -> None:
    """Call in a deployment's constructor (Serve starts the server after it returns)."""
    import ray
    from ray.serve._private import replica

    original = replica.add_port_to_grpc_server
    if getattr(original, "platform_bound", False):
        return

    def bound(server: Any, address: str) -> int:
        if address.startswith("[::]:"):
            host = ray.util.get_node_ip_address()
            host = f"[{host}]" if ":" in host else host
            address = f"{host}:{address.rsplit(':', 1)[1]}"
        return original(server, address)

    bound.platform_bound = True  # type: ignore[attr-defined]
    replica.add_port_to_grpc_server = bound
