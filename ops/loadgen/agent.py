"""Agent sessions: the load of an agentic pool (`python -m ops.loadgen agent SCENARIO`).

A session is what an agent harness sends: one system prompt and tool schema shared by every
session (1-2k tokens), a task of its own, then 3-8 turns; after each turn the assistant's reply
(its tool call, or its text) and a tool result are appended, so every turn re-sends a longer
history. Sessions run `parallel` at a time. Per turn: TTFT (streamed), latency, prompt tokens
and the prompt tokens served from the prefix cache (the response's
usage.prompt_tokens_details.cached_tokens: the pool must set enable_prompt_tokens_details).
Per session: its turns' cost.

`--ab` runs the scenario in interleaved rounds with the pool's prefix-affinity router and with
Serve's power-of-two choice (the `x-routing-policy: power_of_two` header), after a warm-up
round; each round's sessions are new (own seed), only the shared system prompt carries over,
for both policies alike.
"""

from __future__ import annotations

import asyncio
import json
import random
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import httpx
import yaml
from pydantic import Field

from ops.loadgen.chat_stream import stream_chat
from ops.loadgen.metrics import percentiles
from recipes.engines import Strict

SCENARIOS_DIR = Path(__file__).with_name("scenarios")
POWER_OF_TWO = {"x-routing-policy": "power_of_two"}

WORDS = (
    "account audit balance budget cache client cluster config customer dashboard database "
    "deadline deploy document error escalate estimate export feature field filter forecast "
    "incident invoice issue latency ledger metric migrate monitor notify order owner payment "
    "pipeline policy priority query quota record refund region release report request review "
    "schedule schema service shipment status summary supplier support ticket timeline usage "
    "vendor version warehouse workflow"
).split()
TOOLS = [
    ("search_tickets", "Search support tickets by free text",
     {"query": "string", "limit": "integer"}),
    ("get_order", "Fetch one order with its items and status", {"order_id": "string"}),
    ("run_sql", "Run a read-only SQL query on the analytics warehouse", {"sql": "string"}),
    ("send_email", "Send an email to a customer or a colleague",
     {"to": "string", "subject": "string", "body": "string"}),
    ("create_ticket", "Open a ticket in a team's queue",
     {"team": "string", "title": "string", "priority": "string"}),
    ("read_document", "Read a policy document by its id", {"doc_id": "string"}),
]  # fmt: skip


class Range(Strict):
    min: int = Field(ge=0)
    max: int = Field(ge=0)

    def draw(self, rng: random.Random) -> int:
        return rng.randint(self.min, self.max)


class AgentScenario(Strict):
    name: str
    description: str = ""
    model: str = Field(description="Model id or alias (e.g. chat-agent)")
    system_prompt_words: int = Field(
        1100, ge=1, description="Words of the shared system prompt (~1.3 tokens each)"
    )
    sessions: int = Field(16, ge=1, description="Sessions per round")
    parallel: int = Field(4, ge=1, description="Sessions in flight at once")
    turns: Range = Field(default_factory=lambda: Range(min=3, max=8))
    tool_result_words: Range = Field(default_factory=lambda: Range(min=30, max=150))
    max_tokens: int = Field(48, ge=1)
    vocabulary: Literal["english", "dummy-llama"] = Field(
        "english",
        description="Words of the generated text: English, or the dummy Llama's own t3..t128255 "
        "(one token each; with English words its tokenizer would see only <unk>, and every "
        "session would share its whole prompt)",
    )
    seed: int = 0
    timeout_s: float = 300.0
    headers: dict[str, str] = Field(default_factory=dict)


def load_agent_scenario(name_or_path: str) -> AgentScenario:
    path = Path(name_or_path)
    if not path.exists():
        path = SCENARIOS_DIR / f"{name_or_path}.yaml"
    return AgentScenario.model_validate(yaml.safe_load(path.read_text()))


# --- content ------------------------------------------------------------------------------------


def _words(rng: random.Random, n: int, vocabulary: str = "english") -> str:
    if vocabulary == "dummy-llama":
        return " ".join(f"t{rng.randrange(3, 128256)}" for _ in range(n))
    return " ".join(rng.choice(WORDS) for _ in range(n))


def system_prompt(words: int, vocabulary: str = "english") -> str:
    """The shared instructions: fixed for a scenario (seeded by its length only)."""
    rng = random.Random(words)
    rules = []
    while sum(len(r.split()) for r in rules) < words:
        rules.append(f"Rule {len(rules) + 1}: {_words(rng, 18, vocabulary).capitalize()}.")
    return (
        "You are the operations agent of a logistics company. Use the tools to answer; call "
        "one tool at a time and wait for its result. Follow these rules.\n" + "\n".join(rules)
    )


def tool_schemas() -> list[dict[str, Any]]:
    return [
        {
            "type": "function",
            "function": {
                "name": name,
                "description": description,
                "parameters": {
                    "type": "object",
                    "properties": {k: {"type": t} for k, t in params.items()},
                    "required": list(params),
                },
            },
        }
        for name, description, params in TOOLS
    ]


# --- a session ----------------------------------------------------------------------------------


@dataclass
class Turn:
    session: int
    turn: int
    status: int = 0
    ttft_s: float | None = None
    latency_s: float = 0.0
    prompt_tokens: int = 0
    cached_tokens: int | None = None
    completion_tokens: int = 0
    tool_call: bool = False
    pool: str = ""
    error: str | None = None


@dataclass
class Session:
    index: int
    turns: list[Turn] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.turns) and all(t.status == 200 for t in self.turns)


async def _turn(
    client: httpx.AsyncClient, body: dict[str, Any], headers: dict[str, str], turn: Turn
) -> dict[str, Any]:
    """One streamed turn; returns the assistant message to append."""
    chat = await stream_chat(client, body, headers)
    turn.status, turn.pool, turn.error = chat.status, chat.pool, chat.error
    turn.ttft_s, turn.latency_s = chat.ttft_s, chat.latency_s
    turn.prompt_tokens = chat.usage.get("prompt_tokens", 0)
    turn.completion_tokens = chat.usage.get("completion_tokens", 0)
    if chat.usage:
        turn.cached_tokens = (chat.usage.get("prompt_tokens_details") or {}).get("cached_tokens")
    calls: dict[int, dict[str, Any]] = {}
    for delta in chat.deltas:
        for call in delta.get("tool_calls") or []:
            slot = calls.setdefault(call.get("index", 0), {"id": "", "name": "", "arguments": ""})
            slot["id"] = call.get("id") or slot["id"]
            fn = call.get("function") or {}
            slot["name"] += fn.get("name") or ""
            slot["arguments"] += fn.get("arguments") or ""
    message: dict[str, Any] = {"role": "assistant", "content": chat.text or None}
    if calls:
        turn.tool_call = True
        message["tool_calls"] = [
            {
                "id": c["id"] or f"call_{i}",
                "type": "function",
                "function": {"name": c["name"], "arguments": c["arguments"] or "{}"},
            }
            for i, c in sorted(calls.items())
        ]
    return message


async def run_session(
    client: httpx.AsyncClient,
    scenario: AgentScenario,
    index: int,
    rng: random.Random,
    shared: tuple[str, list[dict[str, Any]]],
    headers: dict[str, str],
    shape: random.Random | None = None,
) -> Session:
    """`rng` draws the session's text; `shape` (default: rng) its number of turns and the
    lengths of its tool results, so two rounds can run sessions of the same shape with text
    that shares nothing."""
    shape = shape or rng
    prompt, tools = shared
    session = Session(index)
    vocabulary = scenario.vocabulary
    task = f"Task {rng.randrange(16**6):06x}: {_words(rng, 40, vocabulary)}."
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": prompt},
        {"role": "user", "content": task},
    ]
    for n in range(scenario.turns.draw(shape)):
        turn = Turn(index, n + 1)
        body = {
            "model": scenario.model,
            "messages": messages,
            "tools": tools,
            "tool_choice": "auto",
            "max_tokens": scenario.max_tokens,
            "temperature": 0,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        reply = await _turn(client, body, {**scenario.headers, **headers}, turn)
        session.turns.append(turn)
        if turn.status != 200:
            break
        words = _words(rng, scenario.tool_result_words.draw(shape), vocabulary)
        result = f"Result {n + 1}: {words}."
        messages = [*messages, reply]
        if reply.get("tool_calls"):
            messages += [
                {"role": "tool", "tool_call_id": c["id"], "content": result}
                for c in reply["tool_calls"]
            ]
        else:  # the harness ran a tool the model named in text: its output comes back as user
            messages.append({"role": "user", "content": f"Tool output. {result}"})
    return session


@dataclass
class Round:
    label: str
    policy: str
    seed: int
    wall_s: float
    sessions: list[Session]

    def turns(self) -> list[Turn]:
        return [t for s in self.sessions for t in s.turns]


async def run_round(
    url: str,
    scenario: AgentScenario,
    seed: int,
    policy: str,
    label: str,
    shape_seed: int | None = None,
) -> Round:
    """Sessions with text from `seed` and shapes (turns, result lengths) from `shape_seed`
    (default: seed): the rounds of an A/B pair share shapes, never text."""
    shape_seed = seed if shape_seed is None else shape_seed
    shared = (system_prompt(scenario.system_prompt_words, scenario.vocabulary), tool_schemas())
    headers = POWER_OF_TWO if policy == "power_of_two" else {}
    gate = asyncio.Semaphore(scenario.parallel)
    limits = httpx.Limits(max_connections=scenario.parallel * 2)
    async with httpx.AsyncClient(base_url=url, timeout=scenario.timeout_s, limits=limits) as client:

        async def one(i: int) -> Session:
            async with gate:
                text, shape = random.Random(f"{seed}-{i}"), random.Random(f"shape-{shape_seed}-{i}")
                return await run_session(client, scenario, i, text, shared, headers, shape)

        start = time.perf_counter()
        sessions = await asyncio.gather(*(one(i) for i in range(scenario.sessions)))
        wall = time.perf_counter() - start
    return Round(label, policy, seed, wall, list(sessions))


# --- numbers ------------------------------------------------------------------------------------


def hit_rate(turns: list[Turn]) -> float | None:
    """Prompt tokens served from the prefix cache / prompt tokens (turns that reported it)."""
    known = [t for t in turns if t.status == 200 and t.cached_tokens is not None]
    prompt = sum(t.prompt_tokens for t in known)
    return sum(t.cached_tokens or 0 for t in known) / prompt if prompt else None


def summarize_round(rnd: Round, usd_per_hour: float, replicas: int) -> dict[str, Any]:
    turns = rnd.turns()
    ok = [t for t in turns if t.status == 200]
    done = [s for s in rnd.sessions if s.ok]
    by_turn: dict[int, list[float]] = {}
    for t in ok:
        if t.ttft_s is not None:
            by_turn.setdefault(t.turn, []).append(t.ttft_s)
    pool_usd = rnd.wall_s * replicas * usd_per_hour / 3600
    return {
        "label": rnd.label,
        "policy": rnd.policy,
        "seed": rnd.seed,
        "wall_s": rnd.wall_s,
        "sessions": len(rnd.sessions),
        "sessions_completed": len(done),
        "turns": len(turns),
        "turns_failed": len(turns) - len(ok),
        "tool_call_turns": sum(t.tool_call for t in ok),
        "ttft_s": percentiles(t.ttft_s for t in ok if t.ttft_s is not None),
        "latency_s": percentiles(t.latency_s for t in ok),
        "ttft_p50_s_by_turn": {str(n): statistics.median(v) for n, v in sorted(by_turn.items())},
        "prompt_tokens": sum(t.prompt_tokens for t in ok),
        "cached_tokens": sum(t.cached_tokens or 0 for t in ok),
        "prefix_cache_hit_rate": hit_rate(ok),
        "tokens_per_session": (
            sum(t.prompt_tokens + t.completion_tokens for t in ok) / len(done) if done else None
        ),
        # The pool's replicas for the round's wall time, shared by the sessions it completed.
        "usd_per_session": pool_usd / len(done) if done else None,
    }


def compare_policies(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Per policy: median and spread over its measured rounds."""
    out: dict[str, Any] = {}
    for policy in dict.fromkeys(r["policy"] for r in rounds):
        mine = [r for r in rounds if r["policy"] == policy]
        metrics = {
            "ttft_p50_s": [r["ttft_s"]["p50"] for r in mine],
            "ttft_p99_s": [r["ttft_s"]["p99"] for r in mine],
            "prefix_cache_hit_rate": [r["prefix_cache_hit_rate"] for r in mine],
            "usd_per_session": [r["usd_per_session"] for r in mine],
            "wall_s": [r["wall_s"] for r in mine],
        }
        out[policy] = {
            name: {
                "median": statistics.median(v) if None not in v else None,
                "min": min(v) if None not in v else None,
                "max": max(v) if None not in v else None,
                "rounds": v,
            }
            for name, v in metrics.items()
        }
    return out


def round_records(rnd: Round) -> str:
    return "\n".join(json.dumps(asdict(t)) for t in rnd.turns()) + "\n"
