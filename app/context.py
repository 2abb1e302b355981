"""Working context at the Gateway: a prompt longer than its pool's measured working context
(`context.working_tokens` of the recipe) goes to the model's long-context pool, or is refused
with a 400 that names that pool, before it reaches an engine.

Prompts are counted with the model's own tokenizer and chat template, in a thread of their
own (an 8k-token prompt takes milliseconds to tokenize; the Gateway's event loop serves every
other request meanwhile). Most prompts never reach the tokenizer: with byte-level BPE a token
covers at least one byte, so a prompt whose UTF-8 size plus the template's own tokens fits the
working context fits it in tokens too.
"""

from __future__ import annotations

import asyncio
import json
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from fastapi import Request

from app.registry import Pool
from app.routes.deps import POOL_HEADER, registry
from deployments.common.errors import InputTooLong
from recipes.engines import Task

logger = logging.getLogger("ray.serve")


class PromptCounter:
    """Prompt tokens of chat and completion bodies for one model (tokenizer loaded on first
    use, in the counting thread)."""

    def __init__(self, pool: Pool):
        self.source = pool.spec.model.source
        engine = pool.spec.engine
        template = getattr(engine, "chat_template_file", lambda: None)()
        self.template = template.read_text() if template is not None else None
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"count-{pool.id}")
        self._tokenizer: Any = None
        self._base = 0  # template tokens of a one-message chat
        self._per_message = 0  # template tokens each further message adds

    def upper_bound(self, body: dict[str, Any], endpoint: Task) -> int:
        """At least the prompt's token count, from its size alone (exact for token ids)."""
        if endpoint is Task.COMPLETION:
            prompt = body.get("prompt", "")
            if isinstance(prompt, list) and all(isinstance(t, int) for t in prompt):
                return len(prompt)
            return len(json.dumps(prompt).encode()) + self._base
        messages = body.get("messages", [])
        size = len(json.dumps(messages).encode()) + len(json.dumps(body.get("tools")).encode())
        return size + self._base + self._per_message * len(messages)

    async def count(self, body: dict[str, Any], endpoint: Task, limit: int) -> int:
        """The prompt's tokens; the byte bound when that already fits within `limit`."""
        if self._tokenizer is not None and not body.get("tools"):  # tool text adds template
            bound = self.upper_bound(body, endpoint)
            if bound <= limit:
                return bound
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._count, body, endpoint)

    def _load(self) -> Any:
        if self._tokenizer is None:
            from transformers import AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(str(self.source.resolve()))
            empty = {"role": "user", "content": ""}
            one = len(chat_token_ids(tokenizer, [empty], None, self.template))
            two = len(chat_token_ids(tokenizer, [empty] * 2, None, self.template))
            self._base, self._per_message = one, max(0, two - one)
            self._tokenizer = tokenizer
        return self._tokenizer

    def _count(self, body: dict[str, Any], endpoint: Task) -> int:
        tokenizer = self._load()
        if endpoint is Task.COMPLETION:
            prompt = body.get("prompt", "")
            if isinstance(prompt, list):
                if all(isinstance(t, int) for t in prompt):
                    return len(prompt)
                return max((len(tokenizer(p)["input_ids"]) for p in prompt), default=0)
            return len(tokenizer(prompt)["input_ids"])
        messages, tools = body.get("messages", []), body.get("tools")
        return len(chat_token_ids(tokenizer, messages, tools, self.template))


def chat_token_ids(
    tokenizer: Any, messages: list[dict[str, Any]], tools: Any, template: str | None = None
) -> list[int]:
    """The prompt's token ids as the engine builds them (the recipe's chat template, if any)."""
    ids = tokenizer.apply_chat_template(
        messages, tools=tools, chat_template=template, add_generation_prompt=True, tokenize=True
    )
    if isinstance(ids, dict) or hasattr(ids, "keys"):  # newer transformers return an encoding
        ids = ids["input_ids"]
    return list(ids)


def _counter(request: Request, pool: Pool) -> PromptCounter:
    counters: dict[str, PromptCounter] = request.app.state.prompt_counters
    counter = counters.get(pool.id)
    if counter is None:
        counter = counters[pool.id] = PromptCounter(pool)
    return counter


async def enforce_working_context(request: Request, body: dict[str, Any], endpoint: Task) -> Pool:
    """The pool that serves this prompt: the resolved one while the prompt fits its working
    context; beyond it, the model's long-context pool when the recipe routes there, else a
    400 naming that pool. Returns the pool (request.state carries the route)."""
    pool: Pool = request.state.pool
    context = pool.spec.context
    if context is None:
        return pool
    try:
        tokens = await _counter(request, pool).count(body, endpoint, context.working_tokens)
    except Exception:  # no tokenizer here: the engine's own max_model_len check still holds
        logger.warning("prompt not counted for pool %s", pool.id, exc_info=True)
        return pool
    if tokens <= context.working_tokens:
        return pool
    reg = registry(request)
    long_pool = reg.models[pool.model].pool_with("long_context")
    if context.long_requests == "route" and long_pool is not None and long_pool is not pool:
        route = reg.route(long_pool, request.headers.get(POOL_HEADER))
        request.state.route, request.state.pool = route, route.pool
        return await enforce_working_context(request, body, endpoint)
    where = (
        f"send it to the long-context pool '{long_pool.id}' (header x-workload-profile: "
        f"long_context{_alias_hint(long_pool)})"
        if long_pool is not None and long_pool is not pool
        else f"model '{pool.model}' has no longer-context pool: shorten the prompt"
    )
    raise InputTooLong(
        f"The prompt is {tokens} tokens, over the working context of pool '{pool.id}' "
        f"({context.working_tokens} tokens, measured by its long-context eval): {where}",
        param="messages" if endpoint is Task.CHAT else "prompt",
    )


def _alias_hint(pool: Pool) -> str:
    return f", or model '{pool.spec.aliases[0]}'" if pool.spec.aliases else ""
