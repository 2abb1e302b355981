"""The rollout loop against a running application: deploy each step through Serve's config API
(the launcher's `deploy`, what `serve deploy` submits), keep `ops.loadgen` traffic on the alias
during the step, compare quality, apply the gate, write the record."""

from __future__ import annotations

import json
import threading
import time
from enum import Enum
from pathlib import Path
from typing import Any

import httpx
import yaml

from ops.loadgen.cli import execute
from ops.loadgen.metrics import RequestRecord, summarize
from ops.loadgen.scenario import Scenario, load_scenario
from ops.recipes.render import APP_NAME
from ops.rollout import evals, serve_config
from ops.rollout.state import ROLLOUTS, RolloutRecord, latest, new_record
from recipes.loader import load_recipe
from recipes.schema import LOAD_METRICS, QualityGate, Recipe

# The traffic scenario of a pool's task when none is given.
DEFAULT_TRAFFIC = {
    "chat": "rollout-chat",
    "embed": "rollout-embed",
    "rerank": "rollout-rerank",
    "transcribe": "rollout-stt",
}
# Latency under load: seconds of side-by-side load when a gate checks it and none was asked
# for, split in this many rounds.
DEFAULT_LOAD_S = 30.0
LOAD_ROUNDS = 3
# Tasks whose gated latency under load is the time to first token.
STREAMED_TASKS = frozenset({"chat", "completion"})


class Live:
    """The Serve instance of the Ray cluster this process is connected to."""

    def __init__(self) -> None:
        from ray.serve.context import _connect

        self.client = _connect()

    def config(self) -> dict[str, Any]:
        # JSON round trip: enums (proxy location, ...) become their plain values
        details = json.loads(json.dumps(self.client.get_serve_details(), default=_plain))
        apps = [
            a["deployed_app_config"]
            for a in details["applications"].values()
            if a.get("deployed_app_config")
        ]
        return {
            "proxy_location": details.get("proxy_location") or "HeadOnly",
            "http_options": details["http_options"],
            "applications": apps,
        }

    def url(self) -> str:
        http = self.client.get_serve_details()["http_options"]
        return f"http://{http['host']}:{http['port']}"

    def apply(
        self,
        config: dict[str, Any],
        wait_for: list[str],
        timeout_s: float = 900,
        schedule_timeout_s: float = 120,
    ) -> float:
        """Submit the whole config (as `serve deploy` does) and wait until these applications
        run. Returns the seconds it took."""
        from ray.serve.schema import ServeDeploySchema

        from app.launcher import deploy, wait_until_running
        from recipes.schema import GatewaySpec

        schema = ServeDeploySchema.model_validate(config)
        deploy(schema)
        time.sleep(1.0)  # let the controller take the new target before polling it
        # a candidate that cannot be scheduled (no CPU/GPU left beside the current pools)
        # fails the step after schedule_timeout_s instead of waiting
        gateway = GatewaySpec(ready_timeout_s=timeout_s, schedule_timeout_s=schedule_timeout_s)
        return wait_until_running(wait_for, gateway, log=lambda *_: None)

    def scale(self, app: str, deployment: str, replicas: int) -> None:
        """Serve's scale API (what `POST /api/v1/applications/{app}/deployments/{name}/scale`
        calls): a new replica count for one deployment of an application with
        `external_scaler_enabled`, applied without touching its version."""
        import ray
        from ray.serve._private.common import DeploymentID

        ray.get(
            self.client._controller.update_deployment_replicas.remote(
                DeploymentID(name=deployment, app_name=app), replicas
            )
        )

    def replicas(self, app: str, deployment: str) -> list[dict[str, Any]]:
        details = self.client.get_serve_details()["applications"][app]["deployments"]
        return json.loads(json.dumps(details[deployment]["replicas"], default=_plain))

    def wait_replicas(self, app: str, deployment: str, running: int, timeout_s: float = 300):
        """Until the deployment has exactly `running` replicas, all RUNNING (zero: every
        replica stopped, after its in-flight requests finished). Returns the seconds it took."""
        start = time.monotonic()
        while time.monotonic() - start < timeout_s:
            states = [r["state"] for r in self.replicas(app, deployment)]
            if len(states) == running and all(s == "RUNNING" for s in states):
                return time.monotonic() - start
            time.sleep(0.5)
        raise TimeoutError(f"{app}/{deployment}: not {running} running replicas in {timeout_s}s")


class Traffic:
    """`ops.loadgen` runs of a scenario, one after another, until stopped: steady traffic on the
    alias while a step runs. Every request counts (no warm-up or cool-down window)."""

    def __init__(self, scenario: Scenario | None, url: str):
        self.scenario = scenario
        self.url = url
        self.records: list[RequestRecord] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._start = 0.0

    def __enter__(self) -> Traffic:
        if self.scenario is not None:
            self._start = time.perf_counter()
            self._thread = threading.Thread(target=self._loop, daemon=True)
            self._thread.start()
        return self

    def _loop(self) -> None:
        assert self.scenario is not None
        one = self.scenario.model_copy(update={"warmup_s": 0.0, "cooldown_s": 0.0})
        while not self._stop.is_set():
            self.records.extend(execute(one, self.url, progress=False).records)

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def summary(self) -> dict[str, Any]:
        if self.scenario is None:
            return {}
        duration = (max((r.end for r in self.records), default=self._start)) - self._start
        s = summarize(self.records, duration)
        errors = sorted({f"{r.status} {r.error}" for r in self.records if not r.ok})[:5]
        return {
            "scenario": self.scenario.name,
            "requests": s["requests"],
            "failed": s["failed"],
            "ttft_p99_ms": _ms(s["ttft_s"].get("p99")),
            "e2e_p99_ms": _ms(s["e2el_s"].get("p99")),
            "errors": errors,
        }


def _plain(value: Any) -> Any:
    return value.value if isinstance(value, Enum) else str(value)


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 1)


def side_by_side(scenario: Scenario, pools: dict[str, str], duration_s: float) -> Scenario:
    """The scenario's first profile twice, one copy per pool (addressed by x-pool), so both
    versions see the same load shape in the same run."""
    base = scenario.profiles[0]
    profiles = [
        base.model_copy(update={"name": side, "headers": {**base.headers, "x-pool": pool}})
        for side, pool in pools.items()
    ]
    return scenario.model_copy(
        update={
            "name": f"{scenario.name}-side-by-side",
            "profiles": profiles,
            "duration_s": duration_s,
            "requests": None,
            "warmup_s": 0.0,
            "cooldown_s": 0.0,
        }
    )


def load_numbers(summary: dict[str, Any]) -> dict[str, Any]:
    return {
        "requests": summary["requests"],
        "failed": summary["failed"],
        "request_throughput": round(summary["request_throughput"], 3),
        "output_throughput": round(summary["output_throughput"], 3),
        "ttft_p50_ms": _ms(summary["ttft_s"].get("p50")),
        "ttft_p99_ms": _ms(summary["ttft_s"].get("p99")),
        "e2e_p50_ms": _ms(summary["e2el_s"].get("p50")),
        "e2e_p99_ms": _ms(summary["e2el_s"].get("p99")),
    }


def gate_of(recipe: Recipe) -> QualityGate:
    gate = recipe.dossier.decision.quality_gate
    if not isinstance(gate, QualityGate):
        raise ValueError(
            f"{recipe.id}@{recipe.version} has a free-text quality_gate: a rollout needs a "
            "structured one (eval, checks)"
        )
    return gate


class Rollouts:
    def __init__(self, live: Live, root: Path = ROLLOUTS, log=print):
        self.live = live
        self.root = root
        self.log = log

    def _traffic(self, record: RolloutRecord, scenario: str | None) -> Traffic:
        if scenario == "none":
            return Traffic(None, "")
        task = str(load_recipe(_ref(record.candidate)).task)
        name = scenario or DEFAULT_TRAFFIC.get(task)
        return Traffic(load_scenario(name) if name else None, self.live.url())

    def plan(self, ref: str, mode: str = "canary", weight: float = 0.1) -> RolloutRecord:
        recipe = load_recipe(ref)
        gate_of(recipe)
        config = self.live.config()
        serve_config.start(config, recipe, mode, weight)  # raises if it cannot start
        current = serve_config.platform_pools(config)[recipe.id]["recipe"]
        current_ref = load_recipe(f"{current['id']}@{current['version']}")
        routing = serve_config.routing_for(recipe, mode, weight)
        record = new_record(
            recipe.id,
            recipe.model.name,
            current_ref.ref,
            recipe.ref,
            candidate_name=routing.candidate_name,
            candidate_app=routing.candidate_app,
            mode=mode,
            weight=weight,
        )
        record.save(self.root)
        return record

    def record(self, pool: str, promoted_too: bool = False) -> RolloutRecord:
        record = latest(pool, self.root, active_only=not promoted_too)
        if record is not None and not record.active and record.state != "promoted":
            record = None
        if record is None:
            raise ValueError(f"no rollout in progress for pool '{pool}' under {self.root}")
        return record

    def _step(
        self,
        record: RolloutRecord,
        step: str,
        config: dict,
        wait_for: list[str],
        traffic: str | None,
        expect: str | None = None,
    ) -> dict[str, Any]:
        with self._traffic(record, traffic) as t:
            took = self.live.apply(config, wait_for)
            self._wait_routing(record, step, expect)
            time.sleep(2.0)  # traffic keeps flowing a moment after the switch
        detail = {"deploy_s": round(took, 1), "traffic": t.summary()}
        self.log(f"{step}: {detail}")
        return detail

    def _wait_routing(
        self, record: RolloutRecord, step: str, expect: str | None = None, timeout_s: float = 120
    ) -> None:
        """The Gateway reconfigures after Serve reports the application running: wait until
        /v1/models shows the routing this step asked for (the candidate listed or not, or
        listed as `expect`; after a drain, listed alone)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                listed = httpx.get(f"{self.live.url()}/v1/models", timeout=10).json()
            except (httpx.HTTPError, ValueError):  # the Gateway busy or between states
                time.sleep(0.5)
                continue
            card = next((c for c in listed.get("data", []) if c["id"] == record.model), None)
            pools = card["pools"] if card is not None else []
            shown = any(record.candidate_name in p for p in pools)
            if expect is not None:
                done = any(expect in p for p in pools)
            elif step == "drain":
                done = shown and len(pools) == 1 and "drained" in pools[0]
            else:
                done = shown == (step in ("start", "weight", "promote"))
            if done:
                return
            time.sleep(0.5)
        raise TimeoutError(f"the Gateway did not apply '{step}' within {timeout_s:.0f}s")

    def start(self, record: RolloutRecord, traffic: str | None = None) -> RolloutRecord:
        recipe = load_recipe(_ref(record.candidate))
        live = self.live.config()
        # 1. the candidate's application alone: it starts while the Gateway routes nothing to it
        from app.launcher import LaunchError

        try:
            with self._traffic(record, traffic) as t:
                took = self.live.apply(
                    serve_config.start(live, recipe, record.mode, record.weight, route=False),
                    [APP_NAME, record.candidate_app],
                )
        except LaunchError as e:
            # it never took traffic: remove its application and say why
            self.live.apply(serve_config.abort(live, record.pool), [APP_NAME])
            record.advance(
                "rollback",
                {"traffic": t.summary(), "error": str(e)[-2000:]},
                decision=f"candidate failed to start: {str(e)[:300]}",
            )
            record.save(self.root)
            return record
        launched = {"deploy_s": round(took, 1), "traffic": t.summary()}
        self.log(f"candidate running: {launched}")
        # 2. the Gateway routes its share (or its mirrored copy) to it
        config = serve_config.start(live, recipe, record.mode, record.weight)
        _write_config(self.root, record, "start", config)
        detail = self._step(record, "start", config, [APP_NAME, record.candidate_app], traffic)
        record.advance("start", {"candidate_start": launched, **detail})
        record.save(self.root)
        return record

    def reweight(
        self,
        record: RolloutRecord,
        weight: float,
        traffic: str | None = None,
        mode: str | None = None,
    ):
        """A new canary share (`mode`: also switch shadow <-> canary)."""
        mode = mode or record.mode
        config = serve_config.reroute(self.live.config(), record.pool, weight=weight, mode=mode)
        share = f"{weight:g}" if mode == "canary" else mode
        expect = f"(candidate {record.candidate_name}, {share})"
        detail = self._step(record, "weight", config, [APP_NAME], traffic, expect)
        record.advance(
            "weight", {**detail, "weight": weight, "mode": mode}, weight=weight, mode=mode
        )
        record.save(self.root)
        return record

    def load_compare(
        self,
        record: RolloutRecord,
        duration_s: float,
        scenario: str | None = None,
        rounds: int = LOAD_ROUNDS,
    ) -> dict[str, Any] | None:
        """`ops.loadgen` on both pools in the same run, same scenario: each round runs the
        scenario's load shape once per pool at the same time (addressed by x-pool), after a
        discarded warm-up round. Each side's p50/p99 (TTFT for chat) over every round's
        requests feed the gate; each round's numbers are kept too (their spread)."""
        task = str(load_recipe(_ref(record.candidate)).task)
        name = scenario or DEFAULT_TRAFFIC.get(task)
        if name is None:
            return None
        pools = {"candidate": record.candidate_name, "current": record.pool}
        base = load_scenario(name)
        url = self.live.url()
        per_round = max(duration_s / rounds, 5.0)
        execute(side_by_side(base, pools, min(per_round, 5.0)), url, progress=False)  # warm-up
        kept: dict[str, list[RequestRecord]] = {side: [] for side in pools}
        each = []
        for i in range(rounds):
            # which pool's profile starts first alternates round by round
            order = pools if i % 2 == 0 else dict(reversed(list(pools.items())))
            result = execute(side_by_side(base, order, per_round), url, progress=False)
            each.append({side: load_numbers(result.summary[side]) for side in pools})
            for r in result.records:
                kept[r.profile].append(r)
        key = "ttft" if task in STREAMED_TASKS else "e2e"
        numbers: dict[str, Any] = {
            side: load_numbers(summarize(kept[side], per_round * rounds)) for side in pools
        }
        numbers.update(
            scenario=name,
            duration_s=round(per_round * rounds, 1),
            rounds=each,
            gated_latency=f"{key} (ms)",
        )
        self.log(f"load, side by side: {numbers['candidate']} vs {numbers['current']}")
        return numbers

    def evaluate(self, record: RolloutRecord, load_s: float = 0.0) -> dict[str, Any]:
        recipe = load_recipe(_ref(record.candidate))
        gate = gate_of(recipe)
        eval_set = evals.load_eval(gate.eval)
        pools = {"candidate": record.candidate_name, "current": record.pool}
        with httpx.Client(base_url=self.live.url(), timeout=300) as client:
            metrics = evals.run_eval(
                eval_set, record.model, pools, evals.http_sender(client), str(recipe.task)
            )
        if load_s <= 0 and any(c.metric in LOAD_METRICS for c in gate.checks):
            load_s = DEFAULT_LOAD_S  # the gate asks for latency under load
        if load_s > 0:
            load = self.load_compare(record, load_s)
            if load is not None:
                metrics["load"] = load
                evals.add_load_metrics(metrics, load)
        result = evals.verdict(gate, metrics, slo=recipe.slo_p99_ms)
        record.advance(
            "eval",
            {"eval": gate.eval, "passed": result["passed"]},
            evals={"eval": gate.eval, **metrics},
            verdict=result,
        )
        record.save(self.root)
        self.log(f"verdict: {'pass' if result['passed'] else 'FAIL'} {result['checks']}")
        return result

    def promote(self, record: RolloutRecord, traffic: str | None = None, why: str = "") -> None:
        """Two switches under one traffic run: the candidate takes every request (a failed
        call still retried on the current pool), then the Gateway drops that fallback and the
        current pool is drained to zero replicas (Serve lets its in-flight requests finish).
        The other pools of the platform application keep their replicas."""
        config = serve_config.promote(self.live.config(), record.pool)
        _write_config(self.root, record, "promote", config)
        with self._traffic(record, traffic) as t:
            took = self.live.apply(config, [APP_NAME, record.candidate_app])
            self._wait_routing(record, "promote")
            time.sleep(2.0)  # requests the current pool still had in flight finish
            original = serve_config.pool_deployment_of(self.live.config(), record.pool)
            drained, scale_api = serve_config.drain(self.live.config(), record.pool)
            _write_config(self.root, record, "drain", drained)
            # saved first: an abort after a promote that failed half-way still restores it
            record.drained = {"pool_deployment": original, "scale_api": scale_api}
            record.save(self.root)
            drain_took = self.live.apply(drained, [APP_NAME])
            self._wait_routing(record, "drain")
            if scale_api:
                self.live.scale(APP_NAME, record.pool, 0)
            stopped = self.live.wait_replicas(APP_NAME, record.pool, 0)
            time.sleep(2.0)
        detail = {
            "deploy_s": round(took, 1),
            "drain": {
                "deploy_s": round(drain_took, 1),
                "replicas_stopped_s": round(stopped, 1),
                "scale_api": scale_api,
            },
            "traffic": t.summary(),
        }
        self.log(f"promote: {detail}")
        record.advance("promote", detail, decision=why or "promoted by an operator")
        record.save(self.root)

    def abort(
        self, record: RolloutRecord, traffic: str | None = None, why: str = "", rollback=False
    ) -> None:
        step = "rollback" if rollback else "revert" if record.state == "promoted" else "abort"
        restored = self._undrain(record, traffic) if record.drained else None
        config = serve_config.abort(self.live.config(), record.pool, record.candidate_app)
        _write_config(self.root, record, step, config)
        detail = self._step(record, "abort", config, [APP_NAME], traffic)
        if restored is not None:
            detail["undrain"] = restored
        record.advance(step, detail, decision=why or f"{step} by an operator")
        record.save(self.root)

    def _undrain(self, record: RolloutRecord, traffic: str | None) -> dict[str, Any] | None:
        """Revert after a promote: the drained pool gets its replicas back (a cold start, while
        the candidate still serves everything) before the Gateway routes to it again."""
        drain = record.drained or {}
        original = drain["pool_deployment"]
        with self._traffic(record, traffic) as t:
            config = serve_config.undrain(self.live.config(), record.pool, original)
            self.live.apply(config, [APP_NAME])
            if drain["scale_api"]:
                self.live.scale(APP_NAME, record.pool, original["num_replicas"])
            scaling = original.get("autoscaling_config") or {}
            want = original.get("num_replicas") or scaling.get(
                "initial_replicas", scaling.get("min_replicas", 1)
            )
            took = self.live.wait_replicas(APP_NAME, record.pool, max(want, 1))
        detail = {"replicas_started_s": round(took, 1), "traffic": t.summary()}
        self.log(f"undrain: {detail}")
        record.drained = None
        return detail

    def decide(self, record: RolloutRecord, auto_promote: bool, traffic: str | None = None):
        """After an eval: a failed gate rolls back at once; a pass promotes with auto_promote."""
        verdict = record.verdict or {}
        failed = [c for c in verdict.get("checks", []) if not c["passed"]]
        if not verdict.get("passed"):
            why = "gate failed: " + "; ".join(
                f"{c['metric']} {_fmt(c['candidate'])}"
                + ("" if c["current"] is None else f" (current {_fmt(c['current'])})")
                + f" breaks '{c['rule']}'"
                for c in failed
            )
            self.abort(record, traffic, why=why, rollback=True)
        elif auto_promote:
            self.promote(record, traffic, why="gate passed: promoted automatically (--auto)")


def _fmt(value: Any) -> str:
    return "n/a" if value is None else f"{value:.6g}"


def _ref(full: str) -> str:
    """'id@3+abcdef' -> 'id@3'."""
    return full.split("+", 1)[0]


def _write_config(root: Path, record: RolloutRecord, step: str, config: dict) -> Path:
    """The Serve config a step submitted, beside the record (what `serve deploy` would take)."""
    path = root / f"{record.id}.{step}.serve.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False, width=100))
    return path
