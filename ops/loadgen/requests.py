"""Request bodies for each profile kind, reproducible from the scenario's seed."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ops.loadgen.scenario import Lengths, Profile

# Common English words: with Llama-style BPE tokenizers each is about one token, and with the
# dummy model's word-level tokenizer exactly one; prompts can also be token ids (exact lengths).
WORDS = (
    "the of and to in is was for on that with as by at from his her they this which are be "
    "have has had not but or an were been their one all would there what so up out if about "
    "who get go me when make can like time no just him know take people into year your good "
    "some could them see other than then now look only come its over think also back after "
    "use two how our work first well way even new want because any these give day most us"
).split()


DUMMY_VOCAB = (3, 128255)  # ops.models dummy-llama: "<s>", "</s>", "<unk>", then t3..t128255


@dataclass
class Sampler:
    seed: int
    vocabulary: str = "english"
    rng: random.Random = field(init=False)
    np_rng: np.random.Generator = field(init=False)
    _traces: dict[str, list[int]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.np_rng = np.random.default_rng(self.seed)

    def length(self, spec: Lengths) -> int:
        if spec.dist == "fixed":
            value = spec.value
        elif spec.dist == "uniform":
            value = self.rng.randint(spec.min, spec.max)
        elif spec.dist == "lognormal":
            value = round(self.np_rng.lognormal(np.log(spec.median), spec.sigma))
        else:
            value = self.rng.choice(self._trace(spec))
        return max(spec.min, min(spec.max, value))

    def _trace(self, spec: Lengths) -> list[int]:
        key = f"{spec.trace}:{spec.field}"
        if key not in self._traces:
            lines = Path(spec.trace or "").read_text().splitlines()
            self._traces[key] = [int(json.loads(x)[spec.field]) for x in lines if x.strip()]
        return self._traces[key]

    def words(self, n: int) -> str:
        if self.vocabulary == "dummy-llama":
            low, high = DUMMY_VOCAB
            return " ".join(f"t{self.rng.randint(low, high)}" for _ in range(n))
        return " ".join(self.rng.choice(WORDS) for _ in range(n))


@dataclass
class Session:
    history: list[dict[str, str]]
    turns_left: int


class RequestFactory:
    """Builds (path, json body or form, input token estimate, output tokens) per request."""

    def __init__(self, profile: Profile, seed: int, audio_clips: list[bytes] | None = None):
        self.profile = profile
        self.sampler = Sampler(seed, profile.vocabulary)
        self.system = self.sampler.words(profile.prefix.shared_prefix_tokens)
        self.sessions: list[Session] = []
        self.audio_clips = audio_clips or []

    def build(self) -> tuple[str, dict[str, Any], int, int]:
        p = self.profile
        if p.kind == "embed":
            n = self.sampler.length(p.items)
            texts = [self.sampler.words(self.sampler.length(p.input)) for _ in range(n)]
            body = {"model": p.model, "input": texts, "encoding_format": "base64"}
            return "/v1/embeddings", body, sum(len(t.split()) for t in texts), 0
        if p.kind == "rerank":
            n = self.sampler.length(p.items)
            docs = [self.sampler.words(self.sampler.length(p.input)) for _ in range(n)]
            query = self.sampler.words(12)
            body = {"model": p.model, "query": query, "documents": docs}
            return "/v1/rerank", body, sum(len(d.split()) for d in docs), 0
        if p.kind == "stt":
            clip = self.sampler.rng.choice(self.audio_clips)
            return "/v1/audio/transcriptions", {"model": p.model, "file": clip}, 0, 0
        out_tokens = self.sampler.length(p.output)
        common = {
            "model": p.model,
            "max_tokens": out_tokens,
            "stream": p.stream,
        }
        if p.temperature is not None:
            common["temperature"] = p.temperature
        if p.ignore_eos:
            common["ignore_eos"] = True
        if p.stream:
            common["stream_options"] = {"include_usage": True}
        in_tokens = self.sampler.length(p.input)
        if p.kind == "completion":
            prompt = (self.system + " " if self.system else "") + self.sampler.words(in_tokens)
            return "/v1/completions", {**common, "prompt": prompt}, in_tokens, out_tokens
        messages = self._messages(in_tokens)
        return "/v1/chat/completions", {**common, "messages": messages}, in_tokens, out_tokens

    def _messages(self, in_tokens: int) -> list[dict[str, str]]:
        """Chat turns: a shared system prompt, and multi-turn sessions whose history is resent
        (prefix reuse) with probability hit_rate."""
        reuse = self.profile.prefix
        user = {"role": "user", "content": self.sampler.words(in_tokens)}
        system = [{"role": "system", "content": self.system}] if self.system else []
        if reuse.sessions == 0:
            return [*system, user]
        live = [s for s in self.sessions if s.turns_left > 0]
        if live and self.sampler.rng.random() < reuse.hit_rate:
            session = self.sampler.rng.choice(live)
        else:
            session = Session(history=list(system), turns_left=reuse.turns)
            self.sessions = (
                [*live[-(reuse.sessions - 1) :], session] if reuse.sessions > 1 else [session]
            )
        session.turns_left -= 1
        messages = [*session.history, user]
        # The reply is not known in advance: a fixed stand-in keeps the prefix deterministic.
        session.history = [*messages, {"role": "assistant", "content": self.sampler.words(16)}]
        return messages
