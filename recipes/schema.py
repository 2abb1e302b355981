"""Serving recipes: the one source of every launch.

A recipe describes one pool: one Ray Serve deployment (named by the recipe id) serving one model
for one or more workload profiles. It has two parts:
- the runtime spec (model, hardware, runtime, engine, deployment, SLO, cost): what runs. Only
  this part is hashed into the recipe's identity and rendered into the Serve config;
- the dossier (description, decision, expectations, results files): why it runs so and what it
  was measured to do. Validated, never shipped to the replicas; editing it keeps the hash.
A recipe set groups the recipes that run together as one application on one kind of node.
"""

from __future__ import annotations

import hashlib
import json
from datetime import date
from typing import ClassVar, Literal

from pydantic import BaseModel, Field, field_validator, model_validator

from recipes.engines import EngineConfig, Strict, Task
from recipes.model_source import ModelSource
from recipes.paths import PROJECT_ROOT
from recipes.tenants import AuthSpec, is_loopback

Profile = Literal[
    "fast_chat", "long_context", "batch", "ttft_critical", "agentic", "embed", "rerank", "stt"
]
LLM_PROFILES: tuple[str, ...] = ("fast_chat", "long_context", "batch", "ttft_critical", "agentic")


def content_hash(model: BaseModel, exclude: set[str] | None = None) -> str:
    """sha256 of a model's canonical JSON (sorted keys, defaults included)."""
    data = model.model_dump(mode="json", exclude=exclude)
    body = json.dumps(data, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(body.encode()).hexdigest()


class Versioned(Strict):
    """Identity of a recipe or a recipe set: id, version, and a hash of what it runs."""

    # Fields that explain rather than run: they stay out of the hash.
    unhashed: ClassVar[set[str]] = set()
    # Fields added after recipes were first hashed: left out of the hash while unset, so every
    # recipe that does not use them keeps the identity it was launched and recorded with.
    hashed_when_set: ClassVar[set[str]] = set()

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    version: int = Field(ge=1)

    @property
    def content_hash(self) -> str:
        """Two launches with one hash ran the same thing."""
        unset = {name for name in self.hashed_when_set if getattr(self, name) is None}
        return content_hash(self, exclude=self.unhashed | unset)

    @property
    def ref(self) -> str:
        return f"{self.id}@{self.version}+{self.content_hash[:12]}"


class Architecture(Strict):
    """What the VRAM estimate needs to know about an LLM."""

    params_billion: float = Field(gt=0)
    num_layers: int = Field(ge=1)
    num_kv_heads: int = Field(ge=1)
    head_dim: int = Field(ge=1)
    weight_bytes_per_param: float = Field(2.0, gt=0, description="2 for bf16/fp16, 1 for fp8")
    overhead_gib: float | None = Field(
        None, ge=0, description="Runtime overhead per GPU (context, activations, graphs)"
    )


class ModelSpec(Strict):
    name: str = Field(min_length=1, description="The served model id clients send as `model`")
    source: ModelSource
    revision: str = Field(min_length=1, description="Upstream revision, package version or hash")
    max_context: int | None = Field(None, ge=1, description="The model's own longest context")
    architecture: Architecture | None = None


class HardwareSpec(Strict):
    accelerator: str = Field(description="cpu, or a GPU type such as nvidia-h100-80gb")
    count: int = Field(1, ge=0, description="Accelerators one replica uses (TP size on GPU)")
    memory_gib: float | None = Field(None, gt=0, description="Memory of one accelerator")


class RuntimeSpec(Strict):
    engine: Literal["vllm", "vllm-cpu", "sentence-transformers", "faster-whisper"]
    version: str


class AutoscalingSpec(Strict):
    min_replicas: int = Field(1, ge=0)
    max_replicas: int = Field(1, ge=1)
    initial_replicas: int | None = Field(None, ge=0)
    target_ongoing_requests: float = Field(2.0, gt=0)
    upscale_delay_s: float = Field(30.0, ge=0)
    downscale_delay_s: float = Field(600.0, ge=0)

    @model_validator(mode="after")
    def _ordered(self) -> AutoscalingSpec:
        if self.min_replicas > self.max_replicas:
            raise ValueError("min_replicas must not exceed max_replicas")
        return self


class DeploymentSpec(Strict):
    autoscaling: AutoscalingSpec = Field(default_factory=AutoscalingSpec)
    max_ongoing_requests: int = Field(ge=1, description="Requests in flight per replica")
    max_queued_requests: int = Field(
        ge=-1, description="Requests the ingress may hold for this pool beyond that; -1 = no limit"
    )
    retry_after_s: int = Field(1, ge=0, description="Retry-After of a 429 when the queue is full")
    request_timeout_s: float = Field(300.0, gt=0, description="504 after this long")
    num_cpus: float = Field(ge=0, description="CPUs per replica (fractions allowed)")
    num_gpus: float = Field(0.0, ge=0, description="GPUs per replica; a fraction shares one GPU")
    memory_gib: float | None = Field(None, gt=0, description="Host memory reserved per replica")
    health_check_period_s: float = Field(10.0, gt=0)
    health_check_timeout_s: float = Field(30.0, gt=0)
    graceful_shutdown_timeout_s: float = Field(20.0, ge=0)


class SLOSpec(Strict):
    ttft_p99_ms: float | None = Field(None, gt=0)
    tpot_p99_ms: float | None = Field(None, gt=0)
    e2e_p99_ms: float | None = Field(None, gt=0)


class ThroughputExpectation(Strict):
    value: float = Field(gt=0)
    unit: str = Field(description="e.g. output_tokens/s, texts/s, audio_s/s")
    concurrency: int = Field(ge=1)
    input_tokens: int | None = None
    output_tokens: int | None = None


class LatencyExpectation(Strict):
    ttft_p50_ms: float | None = None
    ttft_p99_ms: float | None = None
    tpot_p50_ms: float | None = None
    tpot_p99_ms: float | None = None
    e2e_p50_ms: float | None = None
    e2e_p99_ms: float | None = None
    concurrency: int = Field(1, ge=1)


class EnvelopeExpectation(Strict):
    """The pool's measured envelope (`python -m ops.capacity calibrate`): its numbers only with
    the results file they come from (the validator checks they match it)."""

    file: str = Field(description="envelope.json, also listed in dossier.results")
    max_concurrency_within_slo: int | None = Field(None, ge=1)


class Expectations(Strict):
    vram_gib: float | None = Field(None, ge=0, description="Expected device memory per GPU")
    throughput: ThroughputExpectation | None = None
    latency: LatencyExpectation | None = None
    cold_start_s: float | None = Field(None, ge=0)
    envelope: EnvelopeExpectation | None = None
    measured: str | None = Field(None, description="Where/when these numbers were measured")
    notes: str = Field("", description="Throughput-vs-latency trade-offs behind the settings")


class SharedPoolDecision(Strict):
    """The recorded decision to let one pool serve several workload profiles."""

    reason: str = Field(min_length=1)
    owner: str = Field(min_length=1)
    date: date


# Quality metrics a rollout measures (ops/rollout/evals.py), and which way is better.
GateMetric = Literal[
    "accuracy",  # chat: exact-match share on the eval set's checkable answers
    "agreement",  # chat: share of greedy outputs identical to the current version's
    "recall_at_5",  # embeddings: labelled retrieval
    "ndcg_at_10",  # embeddings and rerank
    "cosine_agreement",  # embeddings: mean cosine between candidate and current vectors
    "min_cosine_agreement",  # embeddings: the worst input's cosine
    "norm_deviation",  # embeddings: largest |candidate norm / current norm - 1| (scale changes)
    "wer",  # speech: word error rate on generated speech
    "latency_p50_ratio",  # candidate / current request latency on the same eval inputs
    # Under load: ops.loadgen on the same scenario against both versions in the same run
    # (TTFT for chat and completion, request latency otherwise), in ms:
    "load_p50_ms",
    "load_p99_ms",  # also gated against the recipe's SLO with compare "slo"
    "load_p99_ratio",  # candidate / current p99 under the same load
]
LOAD_METRICS: frozenset[str] = frozenset({"load_p50_ms", "load_p99_ms", "load_p99_ratio"})
LOWER_IS_BETTER: frozenset[str] = frozenset(
    {"wer", "latency_p50_ratio", "norm_deviation", *LOAD_METRICS}
)
# Measured on the candidate only against the current version: no "current" value to compare.
AGAINST_CURRENT: frozenset[str] = frozenset(
    {
        "agreement",
        "cosine_agreement",
        "min_cosine_agreement",
        "norm_deviation",
        "latency_p50_ratio",
        "load_p99_ratio",
    }
)
TASK_METRICS: dict[str, frozenset[str]] = {
    "chat": frozenset({"accuracy", "agreement", "latency_p50_ratio", *LOAD_METRICS}),
    "completion": frozenset({"accuracy", "agreement", "latency_p50_ratio", *LOAD_METRICS}),
    "embed": frozenset(
        {
            "recall_at_5",
            "ndcg_at_10",
            "cosine_agreement",
            "min_cosine_agreement",
            "norm_deviation",
            "latency_p50_ratio",
            *LOAD_METRICS,
        }
    ),
    "rerank": frozenset({"ndcg_at_10", "latency_p50_ratio", *LOAD_METRICS}),
    "transcribe": frozenset({"wer", "latency_p50_ratio", *LOAD_METRICS}),
}
# The SLO field a load_p99_ms check with compare "slo" reads (TTFT where a task streams).
SLO_FIELD: dict[str, str] = {
    "chat": "ttft_p99_ms",
    "completion": "ttft_p99_ms",
    "embed": "e2e_p99_ms",
    "rerank": "e2e_p99_ms",
    "transcribe": "e2e_p99_ms",
}


class GateCheck(Strict):
    """One condition a candidate must meet.

    compare "current": the candidate may be at most `tolerance` worse than the current version
    on the same inputs. compare "absolute": the candidate's value must reach `threshold`
    (at least, or at most for lower-is-better metrics); metrics measured against the current
    version (agreement, cosine agreement, latency ratios) only compare so. compare "slo"
    (load_p99_ms only): at most the recipe's own p99 SLO (`slo.ttft_p99_ms` for chat,
    `slo.e2e_p99_ms` otherwise), which the caller passes as `threshold` of `passes`.
    """

    metric: GateMetric
    compare: Literal["current", "absolute", "slo"] = "current"
    tolerance: float = Field(0.0, ge=0)
    threshold: float | None = None

    @model_validator(mode="after")
    def _consistent(self) -> GateCheck:
        if self.compare == "absolute" and self.threshold is None:
            raise ValueError(f"{self.metric}: compare 'absolute' needs a threshold")
        if self.compare == "current" and self.metric in AGAINST_CURRENT:
            raise ValueError(
                f"{self.metric} is measured against the current version already: "
                "use compare 'absolute' with a threshold"
            )
        if self.compare != "absolute" and self.threshold is not None:
            raise ValueError(f"{self.metric}: a threshold needs compare 'absolute'")
        if self.compare == "slo" and self.metric != "load_p99_ms":
            raise ValueError(f"{self.metric}: compare 'slo' gates load_p99_ms only")
        return self

    def passes(self, candidate: float, current: float | None, slo: float | None = None) -> bool:
        lower = self.metric in LOWER_IS_BETTER
        if self.compare in ("absolute", "slo"):
            threshold = self.threshold if self.compare == "absolute" else slo
            if threshold is None:
                return False
            return candidate <= threshold if lower else candidate >= threshold
        if current is None:
            return False
        return (
            candidate <= current + self.tolerance
            if lower
            else candidate >= current - self.tolerance
        )

    def describe(self, slo: float | None = None) -> str:
        op = "<=" if self.metric in LOWER_IS_BETTER else ">="
        if self.compare == "slo":
            return f"{self.metric} {op} the recipe's p99 SLO" + ("" if slo is None else f" {slo:g}")
        if self.compare == "absolute":
            return f"{self.metric} {op} {self.threshold:g}"
        sign = "+" if self.metric in LOWER_IS_BETTER else "-"
        return f"{self.metric} {op} current {sign} {self.tolerance:g}"


class QualityGate(Strict):
    """What a rollout of this recipe must pass against the version serving its alias now."""

    eval: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$", description="Eval set ops/evals/<eval>.json")
    checks: list[GateCheck] = Field(min_length=1)
    notes: str = ""


class DecisionSpec(Strict):
    owner: str = Field(min_length=1)
    date: date
    reason: str = Field(min_length=1, description="Why this model, hardware and these flags")
    quality_gate: QualityGate | str = Field(
        description="What a rollout must pass vs the current version (structured), or a "
        "free-text check from before rollouts were automated (a rollout refuses it)"
    )
    rollback_to: str = Field(
        min_length=1, description="recipe-id@version or an alias to fall back to"
    )
    max_context_reason: str | None = Field(
        None, description="Why a non-long_context pool runs at the model's full context"
    )
    shared_pool: SharedPoolDecision | None = None


class LongContextEval(Strict):
    """What `python -m ops.evals longctx` measured for this recipe: quality and prefill cost
    per context length, and the working context it supports."""

    results: str = Field(description="The eval's JSON (path from the project root)")
    lengths: list[int] = Field(min_length=1, description="Context lengths evaluated (tokens)")
    working_context: int | None = Field(
        description="Longest length whose accuracy stays within the gate (None: none does)"
    )
    gate: str = Field(min_length=1, description="The accuracy gate the working context meets")
    notes: str = ""

    @field_validator("results")
    @classmethod
    def _exists(cls, path: str) -> str:
        if not (PROJECT_ROOT / path).exists():
            raise ValueError(f"long-context eval results not found: {path}")
        return path


class Dossier(Strict):
    """Why a recipe is what it is, and what it was measured to do. Not part of its identity."""

    description: str = ""
    decision: DecisionSpec
    expectations: Expectations = Field(default_factory=Expectations)
    long_context_eval: LongContextEval | None = Field(
        None, description="LLM: the recorded long-context eval (working context)"
    )
    results: list[str] = Field(
        default_factory=list,
        description="Results files (paths from the project root) behind the expectations",
    )

    @field_validator("results")
    @classmethod
    def _results_exist(cls, paths: list[str]) -> list[str]:
        missing = [p for p in paths if not (PROJECT_ROOT / p).exists()]
        if missing:
            raise ValueError(f"results files not found: {', '.join(missing)}")
        return paths


class ContextSpec(Strict):
    """The working context of an LLM pool: the longest prompt it serves, as measured by the
    long-context eval (`python -m ops.evals longctx`), not the model's advertised maximum."""

    working_tokens: int = Field(
        ge=16, description="Longest prompt in tokens (chat template and tools included)"
    )
    long_requests: Literal["reject", "route"] = Field(
        "reject",
        description="A longer prompt: reject = 400 naming the model's long_context pool "
        "(clients pick it by profile: x-workload-profile: long_context or its alias); "
        "route = the Gateway sends it there itself (by prompt length)",
    )


class RoutingSpec(Strict):
    """How the Gateway picks a replica of this pool (only matters with more than one)."""

    policy: Literal["power_of_two", "prefix_affinity"] = Field(
        "power_of_two",
        description="power_of_two: Serve's default (two random replicas, the shorter queue); "
        "prefix_affinity: the replica that served the longest prefix of this prompt "
        "(deployments/llm/prefix_router.py), the least-loaded one under imbalance",
    )
    imbalance_threshold: int = Field(
        4,
        ge=0,
        description="prefix_affinity: the best-matching replica is skipped for the "
        "least-loaded one when its queue is longer by more than this many requests",
    )
    block_chars: int = Field(
        256, ge=16, description="prefix_affinity: prompt characters per hashed prefix block"
    )
    max_blocks: int = Field(
        100_000, ge=1, description="prefix_affinity: prefix blocks remembered (LRU)"
    )


class CostSpec(Strict):
    usd_per_hour: float = Field(ge=0, description="Price of one replica's resources per hour")
    basis: str = Field(description="How the rate was derived, e.g. '$3.00/GPU-h x 0.2 GPU'")


class RecipeSpec(Versioned):
    """What one pool runs; its id is also the Ray Serve deployment name (the pool id)."""

    task: Task
    profile: Profile
    serves_profiles: list[Profile] = Field(
        default_factory=list, description="Other profiles routed to this pool (needs a decision)"
    )
    aliases: list[str] = Field(default_factory=list, description="Model names routed to this pool")
    default_pool: bool = Field(True, description="Serves the bare model id when it has many pools")
    model: ModelSpec
    hardware: HardwareSpec
    runtime: RuntimeSpec
    engine: EngineConfig
    deployment: DeploymentSpec
    slo: SLOSpec = Field(default_factory=SLOSpec)
    cost: CostSpec
    context: ContextSpec | None = Field(
        None, description="LLM: the measured working context and what happens beyond it"
    )
    routing: RoutingSpec | None = Field(
        None, description="Replica choice within the pool; None = Serve's power of two"
    )

    hashed_when_set: ClassVar[set[str]] = {"context", "routing"}

    @model_validator(mode="after")
    def _engine_fits_task(self) -> RecipeSpec:
        tasks = type(self.engine).tasks
        if self.task not in tasks:
            raise ValueError(
                f"engine kind '{self.engine.kind}' cannot serve task '{self.task}' "
                f"(it serves {', '.join(tasks)})"
            )
        return self

    @model_validator(mode="after")
    def _autoscaler_sees_demand(self) -> RecipeSpec:
        scaling = self.deployment.autoscaling
        coalesce = getattr(self.engine, "coalesce", None)
        # The Gateway sends a coalescing pool's replicas coalesce.max_concurrent_batches calls
        # each; at or below the target the autoscaler would never add a replica.
        if (
            scaling.max_replicas > scaling.min_replicas
            and coalesce is not None
            and coalesce.max_concurrent_batches <= scaling.target_ongoing_requests
        ):
            raise ValueError(
                f"engine.coalesce.max_concurrent_batches ({coalesce.max_concurrent_batches}) "
                "must exceed deployment.autoscaling.target_ongoing_requests "
                f"({scaling.target_ongoing_requests:g}): the Gateway sends each replica at most "
                "that many calls, so the autoscaler would never see demand above its target"
            )
        return self

    @property
    def profiles(self) -> list[str]:
        return [self.profile, *[p for p in self.serves_profiles if p != self.profile]]


class Recipe(RecipeSpec):
    """A recipe file: the runtime spec plus its dossier."""

    unhashed: ClassVar[set[str]] = {"dossier"}

    dossier: Dossier

    @model_validator(mode="after")
    def _gate_fits_task(self) -> Recipe:
        gate = self.dossier.decision.quality_gate
        if isinstance(gate, str):
            if not gate.strip():
                raise ValueError("dossier.decision.quality_gate must not be empty")
            return self
        allowed = TASK_METRICS[str(self.task)]
        wrong = [c.metric for c in gate.checks if c.metric not in allowed]
        if wrong:
            raise ValueError(
                f"quality_gate metrics {wrong} do not apply to task '{self.task}' "
                f"(it has: {', '.join(sorted(allowed))})"
            )
        field = SLO_FIELD[str(self.task)]
        if any(c.compare == "slo" for c in gate.checks) and getattr(self.slo, field) is None:
            raise ValueError(f"quality_gate compares load_p99_ms to the SLO: set slo.{field}")
        return self

    @property
    def slo_p99_ms(self) -> float | None:
        """The p99 SLO a load_p99_ms check with compare 'slo' holds the candidate to."""
        return getattr(self.slo, SLO_FIELD[str(self.task)])

    @property
    def spec(self) -> RecipeSpec:
        """The part that runs (what a rendered config carries); same hash as the recipe."""
        return RecipeSpec.model_validate(self.model_dump(exclude={"dossier"}))


class NodeSpec(Strict):
    """The machine a recipe set is planned for."""

    cpus: float = Field(gt=0)
    gpus: int = Field(0, ge=0)
    accelerator: str = "cpu"
    gpu_memory_gib: float | None = Field(None, gt=0)
    memory_gib: float | None = Field(None, gt=0)


class ServeRuntimeSpec(Strict):
    """Ray Serve's own data-path switches. They are process-wide, so they are set where Ray
    starts (the launcher does it for a local Ray; a cluster sets them on every node)."""

    ingress: Literal["proxy", "direct-haproxy"] = Field(
        "proxy",
        description="proxy: Serve's Python HTTP proxy forwards to the Gateway; direct-haproxy: "
        "HAProxy forwards straight to Gateway replicas (one Python hop less per request)",
    )
    user_code_in_main_loop: bool = Field(
        False,
        description="Run replica code on the replica's main event loop (no thread hop per "
        "request); safe only while every deployment keeps blocking work off the loop",
    )

    def env(self) -> dict[str, str]:
        env = {
            "RAY_SERVE_RUN_USER_CODE_IN_SEPARATE_THREAD": "0"
            if self.user_code_in_main_loop
            else "1",
            # The raylet adopts and kills what a dead worker leaves: a replica killed with
            # SIGKILL otherwise leaves its vLLM EngineCore (GBs of weights) running.
            "RAY_kill_child_processes_on_worker_exit_with_raylet_subreaper": "true",
        }
        if self.ingress == "direct-haproxy":
            env |= {"RAY_SERVE_ENABLE_DIRECT_INGRESS": "1", "RAY_SERVE_ENABLE_HA_PROXY": "1"}
        return env


class GatewaySpec(Strict):
    """The ingress deployment: FastAPI under @serve.ingress."""

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    num_replicas: int = Field(1, ge=1)
    num_cpus: float = Field(0.25, ge=0)
    max_ongoing_requests: int = Field(1000, ge=1)
    max_queued_requests: int = Field(-1, ge=-1)
    retry_after_s: int = Field(1, ge=0)
    max_body_bytes: int = Field(
        32 * 1024 * 1024, ge=1, description="413 for a larger body (STT has its own limit)"
    )
    ready_timeout_s: float = Field(900.0, gt=0, description="Launcher gives up after this")
    schedule_timeout_s: float = Field(
        90.0, gt=0, description="Launcher fails if a replica stays unschedulable this long"
    )
    serve_runtime: ServeRuntimeSpec = Field(default_factory=ServeRuntimeSpec)
    metrics_export_port: int = Field(
        8080, ge=1, le=65535, description="Ray's Prometheus endpoint on a node the launcher starts"
    )
    trace_sampling_ratio: float = Field(
        0.05, ge=0, le=1, description="Share of requests traced when an OTLP endpoint is set"
    )
    auth: AuthSpec = Field(
        default_factory=AuthSpec,
        description="API keys; required for a host beyond loopback (see recipes/tenants.py)",
    )
    request_arrival_timeout_s: int = Field(
        10, ge=1, description="HAProxy: 408 when a request's headers and body take longer"
    )
    client_idle_timeout_s: int = Field(
        120, ge=1, description="HAProxy: a client connection idle this long is closed"
    )
    max_prompts: int = Field(
        64, ge=1, description="400 for a /v1/completions request with more prompts"
    )
    max_token_ids: int = Field(
        262_144, ge=1, description="400 for a request carrying more token ids in all"
    )

    @model_validator(mode="after")
    def _keys_beyond_loopback(self) -> GatewaySpec:
        if not is_loopback(self.host) and not self.auth.configured:
            raise ValueError(
                f"gateway.host {self.host} is reachable beyond this machine: name the API keys "
                "(gateway.auth.keys_file or gateway.auth.keys_env); only 127.0.0.1 may run open"
            )
        return self


class RecipeSet(Versioned):
    unhashed: ClassVar[set[str]] = {"description"}

    description: str = ""
    node: NodeSpec
    recipes: list[str] = Field(min_length=1, description="recipe-id@version, each one pool")
    gpu_sharing: list[list[str]] = Field(
        default_factory=list,
        description="Groups of recipe ids whose fractional GPUs share one device",
    )
    gateway: GatewaySpec = Field(default_factory=GatewaySpec)
    ray_env: dict[str, str] = Field(
        default_factory=dict, description="Environment for every replica (runtime_env.env_vars)"
    )
    placement: dict[str, dict[str, float]] = Field(
        default_factory=dict,
        description="Deployment (recipe id, or Gateway) -> Ray custom resources its replicas "
        "need: a pool goes only on nodes started with them (`ray start --resources`), e.g. "
        "{'embed-minilm-cpu': {'pool-embed': 0.01}}",
    )

    @property
    def content_hash(self) -> str:
        # A set without placement hashes as it did before the field existed.
        exclude = self.unhashed | ({"placement"} if not self.placement else set())
        return content_hash(self, exclude=exclude)

    @model_validator(mode="after")
    def _placement_names_deployments(self) -> RecipeSet:
        names = {ref.split("@")[0] for ref in self.recipes} | {"Gateway"}
        unknown = sorted(set(self.placement) - names)
        if unknown:
            raise ValueError(f"placement names no deployment of this set: {unknown}")
        for name, resources in self.placement.items():
            bad = sorted(k for k, v in resources.items() if v <= 0)
            if bad:
                raise ValueError(f"placement of {name}: amounts must be > 0: {bad}")
        return self
