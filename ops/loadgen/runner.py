"""Runs a scenario against a target: arrivals, requests, per-request records, the summary."""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from typing import Any

import aiohttp

from ops.loadgen.metrics import RequestRecord, measured, summarize
from ops.loadgen.requests import RequestFactory
from ops.loadgen.scenario import Arrival, Profile, Scenario

Send = Callable[[Profile, str, dict[str, Any], int, int], Awaitable[RequestRecord]]


# --- arrivals -----------------------------------------------------------------------------------


def arrival_times(arrival: Arrival, rng: random.Random, duration_s: float, count: int | None):
    """Send times (seconds from start) of an open-loop arrival process."""
    times, t = [], 0.0
    while True:
        if arrival.type == "constant":
            gap = 1.0 / arrival.rate
        elif arrival.type == "gamma":
            # Gamma inter-arrival times with mean 1/rate; shape < 1 makes bursts, 1 is Poisson.
            shape = arrival.burstiness
            gap = rng.gammavariate(shape, 1.0 / (arrival.rate * shape))
        elif arrival.type == "ramp":
            progress = min(1.0, t / duration_s) if duration_s else 1.0
            rate = arrival.start_rate + (arrival.rate - arrival.start_rate) * progress
            gap = rng.expovariate(rate)
        else:
            gap = rng.expovariate(arrival.rate)
        t += gap
        if (count is not None and len(times) >= count) or (count is None and t >= duration_s):
            return times
        times.append(t)


@dataclass
class Plan:
    open_loop: list[tuple[float, Profile]]
    closed_loop: list[Profile]


def plan(scenario: Scenario) -> Plan:
    rng = random.Random(scenario.seed)
    duration = scenario.duration_s or 0.0
    schedule: list[tuple[float, Profile]] = []
    shared = [p for p in scenario.profiles if p.share is not None]
    closed = [p for p in scenario.profiles if p.arrival and p.arrival.type == "concurrency"]
    if shared and scenario.arrival is not None:
        weights = [p.share or 0.0 for p in shared]
        for t in arrival_times(scenario.arrival, rng, duration, scenario.requests):
            schedule.append((t, rng.choices(shared, weights)[0]))
    for p in scenario.profiles:
        if p.arrival is not None and p.arrival.type != "concurrency":
            count = scenario.requests if scenario.requests and not shared else None
            schedule += [(t, p) for t in arrival_times(p.arrival, rng, duration, count)]
    schedule.sort(key=lambda item: item[0])
    return Plan(open_loop=schedule, closed_loop=closed)


# --- HTTP ---------------------------------------------------------------------------------------


def http_sender(session: aiohttp.ClientSession, base_url: str, timeout_s: float) -> Send:
    async def send(
        profile: Profile, path: str, body: dict[str, Any], in_tokens: int, out_tokens: int
    ) -> RequestRecord:
        start = time.perf_counter()
        record = RequestRecord(profile=profile.name, send=start, end=start, status=0)
        record.input_tokens = in_tokens
        try:
            kwargs: dict[str, Any] = {"headers": profile.headers or None}
            if profile.kind == "stt":
                form = aiohttp.FormData()
                form.add_field("model", body["model"])
                form.add_field("file", body["file"], filename="clip.wav")
                kwargs["data"] = form
            else:
                kwargs["json"] = body
            timeout = aiohttp.ClientTimeout(total=timeout_s)
            async with session.post(f"{base_url}{path}", timeout=timeout, **kwargs) as r:
                record.status = r.status
                if r.status != 200:
                    record.error = (await r.text())[:300]
                elif body.get("stream"):
                    await _read_stream(r, record)
                else:
                    payload = await r.read()
                    record.chunks.append(time.perf_counter())
                    _usage(json.loads(payload) if payload[:1] == b"{" else {}, record)
        except (aiohttp.ClientError, TimeoutError) as e:
            record.status = record.status or 599
            record.error = f"{type(e).__name__}: {e}"[:300]
        record.end = time.perf_counter()
        if record.ok and profile.kind in ("chat", "completion") and not record.output_tokens:
            record.output_tokens = out_tokens
        return record

    return send


async def _read_stream(response: aiohttp.ClientResponse, record: RequestRecord) -> None:
    async for raw in response.content:
        on_sse_line(raw, record)


def on_sse_line(raw: bytes | str, record: RequestRecord) -> None:
    """Record one line of an OpenAI SSE stream: a chunk that carries a token, or the usage.

    As `vllm bench serve` does, any chunk with a choice counts, even with empty text: a token whose
    text is a partial UTF-8 byte decodes to "" yet was generated then; requiring text would move
    TTFT to the next chunk, up to stream_interval tokens later."""
    line = raw.strip() if isinstance(raw, bytes) else raw.strip().encode()
    if not line.startswith(b"data: ") or line == b"data: [DONE]":
        return
    event = json.loads(line[6:])
    if event.get("choices"):
        record.chunks.append(time.perf_counter())
    _usage(event, record)


def _usage(event: dict[str, Any], record: RequestRecord) -> None:
    usage = event.get("usage")
    if usage:
        record.usage_reported = bool(usage.get("completion_tokens")) or record.usage_reported
        record.output_tokens = usage.get("completion_tokens") or record.output_tokens
        record.input_tokens = usage.get("prompt_tokens") or record.input_tokens


# --- running ------------------------------------------------------------------------------------


@dataclass
class RunResult:
    scenario: str
    target: str
    records: list[RequestRecord]
    window: tuple[float, float]
    summary: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "target": self.target,
            "window_s": self.window[1] - self.window[0],
            "summary": self.summary,
        }

    def jsonl(self) -> str:
        t0 = self.window[0]
        lines = []
        for r in self.records:
            row = asdict(r)
            row["send"] = round(r.send - t0, 6)
            row["end"] = round(r.end - t0, 6)
            row["chunks"] = [round(c - t0, 6) for c in r.chunks]
            row["ttft"], row["tpot"], row["e2el"] = r.ttft, r.tpot, r.e2el
            lines.append(json.dumps(row))
        return "\n".join(lines) + "\n"


WARMUP_CONCURRENCY = 8


async def warm_up(scenario: Scenario, send: Send, audio_clips: list[bytes] | None) -> None:
    """Send the scenario's warm-up requests and drop their records. They draw from their own
    seeds, so the measured requests are the same with or without a warm-up."""
    if not scenario.warmup_requests:
        return
    factories = [
        (p, RequestFactory(p, scenario.seed + 10_000 + i, audio_clips))
        for i, p in enumerate(scenario.profiles)
    ]
    gate = asyncio.Semaphore(WARMUP_CONCURRENCY)

    async def one(i: int) -> None:
        profile, factory = factories[i % len(factories)]
        async with gate:
            await send(profile, *factory.build())

    await asyncio.gather(*(one(i) for i in range(scenario.warmup_requests)))


async def run(
    scenario: Scenario,
    send: Send,
    target: str,
    audio_clips: list[bytes] | None = None,
    progress: bool = True,
) -> RunResult:
    factories = {
        p.name: RequestFactory(p, scenario.seed + i, audio_clips)
        for i, p in enumerate(scenario.profiles)
    }
    await warm_up(scenario, send, audio_clips)
    schedule = plan(scenario)
    records: list[RequestRecord] = []
    bar = _progress(scenario, schedule, progress)
    start = time.perf_counter()
    deadline = start + (scenario.duration_s or float("inf"))

    async def one(profile: Profile) -> None:
        path, body, in_tokens, out_tokens = factories[profile.name].build()
        records.append(await send(profile, path, body, in_tokens, out_tokens))
        if bar is not None:
            bar.update(1)

    async def closed_worker(profile: Profile, budget: int | None) -> None:
        sent = 0
        while time.perf_counter() < deadline and (budget is None or sent < budget):
            sent += 1
            await one(profile)

    async def open_loop() -> None:
        tasks = []
        for at, profile in schedule.open_loop:
            delay = start + at - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(profile)))
        await asyncio.gather(*tasks)

    n_workers = sum(p.arrival.concurrency for p in schedule.closed_loop)  # type: ignore[union-attr]
    # A count-based closed loop shares the scenario's request count across its workers.
    budget = max(1, scenario.requests // n_workers) if scenario.requests and n_workers else None
    workers = [
        closed_worker(p, budget)
        for p in schedule.closed_loop
        for _ in range(p.arrival.concurrency)  # type: ignore[union-attr]
    ]
    await asyncio.gather(open_loop(), *workers)
    if bar is not None:
        bar.close()

    if scenario.duration_s is not None:
        window = (start + scenario.warmup_s, start + scenario.duration_s - scenario.cooldown_s)
        kept = measured(records, *window)
        duration = window[1] - window[0]
    else:
        kept = records
        first = min((r.send for r in kept), default=start)
        last = max((r.end for r in kept), default=start)
        window, duration = (first, last), last - first
    summary = {"all": summarize(kept, duration)}
    for p in scenario.profiles:
        mine = [r for r in kept if r.profile == p.name]
        summary[p.name] = summarize(mine, duration, p.slo)
    return RunResult(scenario.name, target, kept, window, summary)


def _progress(scenario: Scenario, schedule: Plan, enabled: bool):
    if not enabled:
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    total = len(schedule.open_loop) + (scenario.requests or 0) * bool(schedule.closed_loop)
    return tqdm(total=total or None, desc=scenario.name, unit="req", leave=False)


async def run_http(
    scenario: Scenario, base_url: str, audio_clips: list[bytes] | None = None, progress=True
) -> RunResult:
    connector = aiohttp.TCPConnector(limit=0, force_close=False)
    async with aiohttp.ClientSession(connector=connector) as session:
        send = http_sender(session, base_url.rstrip("/"), scenario.timeout_s)
        return await run(scenario, send, base_url, audio_clips, progress)
