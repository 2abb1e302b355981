"""The long-context eval: quality and cost of one model per context length, through the
platform's own API (`python -m ops.evals longctx --model M`).

Per length (prompt tokens, chat template included):
- passkey retrieval: generated filler text with a random 5-digit key stated once at a given
  depth (share of the filler before it); exact match = the key appears as a whole number in
  the reply;
- a short multi-fact question: three facts at three depths, a question needing two of them;
  exact match = both answers appear as whole words;
- TTFT (streamed: send to the first token chunk) and total latency, prompt and completion
  tokens from the response's usage;
- KV-cache usage: the peak of the engine's `platform_llm_kv_cache_usage_ratio` gauge of the
  answering pool while the request runs (GET /metrics, sampled every 0.25 s), and the KV bytes
  the prompt takes by the recipe's architecture;
- tokens and cost per accepted outcome (accepted = correct): the pool's $/h times the
  request's latency (requests run one at a time, so the latency is the replica time it held),
  summed per length and divided by the correct answers.

Every prompt starts with its own random document id, so no request reuses another's prefix
cache: TTFT is a full prefill. The working context is the longest length whose passkey accuracy
(over every depth) meets the gate at that length and at every shorter one.

Output: longctx.json (every request, summaries, working context), longctx.md (tables) and
longctx.png (accuracy and TTFT against length) in results/longctx-<model>-<time>/.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import re
import statistics
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

from ops.loadgen.chat_stream import stream_chat
from ops.quality import normalize_words

RESULTS = Path(__file__).resolve().parents[2] / "results"
KV_METRIC = "ray_platform_llm_kv_cache_usage_ratio"

FILLER = (
    "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again. "
)
# The multi-fact question: three facts, the question asks for two of them.
FACTS = (
    ("The meeting room for the launch review is room {room}.", "room"),
    ("The project code name is {code}.", "code"),
    ("The budget owner is {owner}.", "owner"),
)
CODES = ("Falcon", "Orchid", "Granite", "Harbor", "Juniper", "Meadow", "Quartz", "Willow")
OWNERS = ("Alice", "Bruno", "Chiara", "Dmitri", "Elena", "Farid", "Greta", "Hiro")


# --- scoring (pure) -----------------------------------------------------------------------------


def passkey_correct(reply: str, key: str) -> bool:
    """The key appears as a whole number in the reply (not inside a longer number)."""
    return re.search(rf"(?<!\d){re.escape(key)}(?!\d)", reply) is not None


def facts_correct(reply: str, answers: list[str]) -> bool:
    """Every answer appears as whole words in the normalized reply."""
    words = normalize_words(reply)
    for answer in answers:
        want = normalize_words(answer)
        n = len(want)
        if not any(words[i : i + n] == want for i in range(len(words) - n + 1)):
            return False
    return True


def working_context(accuracy: dict[int, float], gate: float) -> int | None:
    """The longest length whose accuracy meets the gate there and at every shorter length."""
    best = None
    for length in sorted(accuracy):
        if accuracy[length] < gate:
            break
        best = length
    return best


def per_accepted(total: float, accepted: int) -> float | None:
    return total / accepted if accepted else None


# --- prompts ------------------------------------------------------------------------------------


@dataclass
class Item:
    kind: str  # passkey | facts
    length: int  # nominal context length (prompt tokens)
    depth: float | None  # passkey: where the key is (0 = start of the filler, 1 = end)
    messages: list[dict[str, str]]
    answers: list[str]


def _insert(filler: str, sentences: list[tuple[float, str]]) -> str:
    """Put each sentence at its depth (share of the filler's characters before it), on a
    sentence boundary."""
    cuts = []
    for depth, sentence in sorted(sentences):
        pos = filler.rfind(". ", 0, int(len(filler) * depth) + 1)
        cuts.append((0 if pos < 0 else pos + 2, sentence))
    out, last = [], 0
    for pos, sentence in cuts:
        out += [filler[last:pos], sentence + " "]
        last = pos
    out.append(filler[last:])
    return "".join(out)


def build_items(
    lengths: list[int],
    depths: list[float],
    trials: int,
    seed: int,
    count_tokens,
) -> list[Item]:
    """Passkey items per (length, depth, trial) and one multi-fact item per (length, trial).
    `count_tokens(messages)` gives a chat's prompt tokens; the filler is sized to the length."""
    rng = random.Random(seed)
    items: list[Item] = []
    for length in lengths:
        for _trial in range(trials):
            for depth in depths:
                key = str(rng.randrange(10000, 100000))
                needle = f"The pass key is {key}. Remember it. {key} is the pass key."
                question = "What is the pass key? Answer with the number only."
                items.append(
                    _fit(
                        length,
                        rng,
                        count_tokens,
                        "passkey",
                        depth,
                        [(depth, needle)],
                        question,
                        [key],
                    )
                )
            room, code, owner = str(rng.randrange(100, 1000)), rng.choice(CODES), rng.choice(OWNERS)
            values = {"room": room, "code": code, "owner": owner}
            facts = [(d, FACTS[i][0].format(**values)) for i, d in enumerate((0.2, 0.5, 0.8))]
            question = (
                "What is the meeting room number for the launch review, and what is the "
                "project code name? Answer in one short sentence."
            )
            items.append(
                _fit(length, rng, count_tokens, "facts", None, facts, question, [room, code])
            )
    return items


def _fit(length, rng, count_tokens, kind, depth, sentences, question, answers) -> Item:
    """The item whose prompt is `length` tokens (within one filler sentence): the filler is
    sized by the tokens of a probe, then trimmed or extended sentence by sentence."""
    doc_id = f"Document {rng.randrange(16**8):08x}."

    def messages(repeats: int) -> list[dict[str, str]]:
        text = _insert(FILLER * repeats, sentences)
        return [{"role": "user", "content": f"{doc_id} {text}\n\n{question}"}]

    probe = 8
    per_repeat = (count_tokens(messages(2 * probe)) - count_tokens(messages(probe))) / probe
    base = count_tokens(messages(probe)) - probe * per_repeat
    repeats = max(1, int((length - base) / per_repeat))
    while repeats > 1 and count_tokens(messages(repeats)) > length:
        repeats -= 1
    return Item(kind, length, depth, messages(repeats), answers)


# --- running ------------------------------------------------------------------------------------


@dataclass
class Outcome:
    kind: str
    length: int
    depth: float | None
    answers: list[str]
    reply: str = ""
    correct: bool = False
    status: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    ttft_s: float | None = None
    latency_s: float = 0.0
    kv_usage_peak: float | None = None
    pool: str = ""
    recipe: str = ""
    error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def kv_usage(metrics_text: str, pool: str) -> float | None:
    """The KV-cache usage gauge of `pool` in a Prometheus text page."""
    for line in metrics_text.splitlines():
        if line.startswith(KV_METRIC + "{") and f'pool="{pool}"' in line:
            return float(line.rsplit(" ", 1)[1])
    return None


async def _sample_kv(client: httpx.AsyncClient, pool: str, peak: list[float], stop: asyncio.Event):
    while not stop.is_set():
        try:
            value = kv_usage((await client.get("/metrics")).text, pool)
            if value is not None:
                peak.append(value)
        except httpx.HTTPError:
            pass
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.25)


async def run_item(
    client: httpx.AsyncClient,
    model: str,
    item: Item,
    max_tokens: int,
    headers: dict[str, str],
    pool: str | None,
) -> Outcome:
    outcome = Outcome(item.kind, item.length, item.depth, item.answers)
    body = {
        "model": model,
        "messages": item.messages,
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    peak: list[float] = []
    stop = asyncio.Event()
    sampler = asyncio.create_task(_sample_kv(client, pool, peak, stop)) if pool else None
    chat = await stream_chat(client, body, headers)
    outcome.status, outcome.error = chat.status, chat.error
    outcome.pool, outcome.recipe = chat.pool, chat.recipe
    outcome.ttft_s, outcome.latency_s = chat.ttft_s, chat.latency_s
    outcome.prompt_tokens = chat.usage.get("prompt_tokens", 0)
    outcome.completion_tokens = chat.usage.get("completion_tokens", 0)
    outcome.reply = chat.text
    stop.set()
    if sampler is not None:
        await sampler
    outcome.kv_usage_peak = max(peak) if peak else None
    if outcome.status == 200:
        if item.kind == "passkey":
            outcome.correct = passkey_correct(outcome.reply, item.answers[0])
        else:
            outcome.correct = facts_correct(outcome.reply, item.answers)
    return outcome


def summarize(
    outcomes: list[Outcome], usd_per_hour: float, kv_bytes_per_token: float | None, gate: float
) -> dict[str, Any]:
    lengths = sorted({o.length for o in outcomes})
    depths = sorted({o.depth for o in outcomes if o.depth is not None})
    per_length = []
    for length in lengths:
        mine = [o for o in outcomes if o.length == length]
        keys = [o for o in mine if o.kind == "passkey"]
        facts = [o for o in mine if o.kind == "facts"]
        ok = [o for o in mine if o.status == 200]
        accepted = sum(o.correct for o in mine)
        tokens = sum(o.prompt_tokens + o.completion_tokens for o in ok)
        cost = sum(o.latency_s for o in mine) * usd_per_hour / 3600
        ttfts = [o.ttft_s for o in ok if o.ttft_s is not None]
        prompt = statistics.median([o.prompt_tokens for o in ok]) if ok else None
        kv_peaks = [o.kv_usage_peak for o in ok if o.kv_usage_peak is not None]
        per_length.append(
            {
                "length": length,
                "prompt_tokens_median": prompt,
                "passkey_accuracy": sum(o.correct for o in keys) / len(keys) if keys else None,
                "passkey_by_depth": {
                    f"{d:g}": _share([o for o in keys if o.depth == d]) for d in depths
                },
                "facts_accuracy": _share(facts),
                "requests": len(mine),
                "failed": len(mine) - len(ok),
                "ttft_s_median": statistics.median(ttfts) if ttfts else None,
                "ttft_s_max": max(ttfts) if ttfts else None,
                "latency_s_median": statistics.median([o.latency_s for o in ok]) if ok else None,
                "kv_usage_peak": max(kv_peaks) if kv_peaks else None,
                "kv_gib_per_prompt": prompt * kv_bytes_per_token / 2**30
                if prompt and kv_bytes_per_token
                else None,
                "accepted": accepted,
                "tokens_per_accepted": per_accepted(tokens, accepted),
                "usd_per_accepted": per_accepted(cost, accepted),
            }
        )
    accuracy = {
        row["length"]: row["passkey_accuracy"]
        for row in per_length
        if row["passkey_accuracy"] is not None
    }
    return {
        "per_length": per_length,
        "gate": f"passkey accuracy >= {gate:g} at the length and every shorter one",
        "gate_min_accuracy": gate,
        "working_context": working_context(accuracy, gate),
    }


def _share(outcomes: list[Outcome]) -> float | None:
    return sum(o.correct for o in outcomes) / len(outcomes) if outcomes else None


def table(summary: dict[str, Any]) -> str:
    depths = list(summary["per_length"][0]["passkey_by_depth"]) if summary["per_length"] else []
    head = (
        ["length", "prompt tok", "passkey acc"]
        + [f"depth {d}" for d in depths]
        + ["facts acc", "TTFT p50 s", "latency p50 s", "KV peak", "KV GiB/prompt"]
        + ["tokens/accepted", "$/accepted"]
    )
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]

    def f(v: Any, spec: str = ".2f") -> str:
        return "n/a" if v is None else format(v, spec)

    for r in summary["per_length"]:
        cells = [str(r["length"]), f(r["prompt_tokens_median"], ".0f"), f(r["passkey_accuracy"])]
        cells += [f(r["passkey_by_depth"][d]) for d in depths]
        cells += [
            f(r["facts_accuracy"]),
            f(r["ttft_s_median"], ".3f"),
            f(r["latency_s_median"], ".3f"),
            f(r["kv_usage_peak"], ".3f"),
            f(r["kv_gib_per_prompt"], ".3f"),
            f(r["tokens_per_accepted"], ".0f"),
            f(r["usd_per_accepted"], ".2e"),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines.append(f"Gate: {summary['gate']}. Working context: {summary['working_context']}.")
    return "\n".join(lines) + "\n"


def plot(summary: dict[str, Any], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = summary["per_length"]
    x = [r["length"] for r in rows]
    fig, acc = plt.subplots(figsize=(7, 4))
    acc.plot(x, [r["passkey_accuracy"] for r in rows], "o-", label="passkey accuracy")
    acc.plot(x, [r["facts_accuracy"] for r in rows], "s--", label="multi-fact accuracy")
    acc.axhline(summary["gate_min_accuracy"], color="grey", lw=0.8, ls=":", label="gate")
    acc.set_xscale("log", base=2)
    acc.set_xlabel("context length (prompt tokens)")
    acc.set_ylabel("accuracy")
    acc.set_ylim(-0.05, 1.05)
    ttft = acc.twinx()
    ttft.plot(x, [r["ttft_s_median"] for r in rows], "^-", color="tab:red", label="TTFT p50")
    ttft.set_ylabel("TTFT p50 (s)")
    lines = acc.get_legend_handles_labels()
    more = ttft.get_legend_handles_labels()
    acc.legend(lines[0] + more[0], lines[1] + more[1], loc="center left", fontsize=8)
    acc.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def outcome_dicts(outcomes: list[Outcome]) -> list[dict[str, Any]]:
    return [asdict(o) for o in outcomes]
