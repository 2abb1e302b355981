"""Deterministic, realistic-looking English texts for embedding benchmarks.

Each text is a few sentences built from fixed clause templates and word lists (support tickets,
product notes, search queries, documentation snippets), 10-60 words by default, so tokenization
and padding behave as on real short RAG chunks. The same seed always gives the same texts on
every machine and Python version (only `random.Random` with an integer seed is used).
"""

from __future__ import annotations

import random

SUBJECTS = (
    "the customer",
    "our team",
    "the new release",
    "the payment service",
    "this report",
    "the search index",
    "a support agent",
    "the mobile app",
    "the warehouse",
    "the API gateway",
    "the billing system",
    "every replica",
    "the nightly job",
    "the model server",
    "my manager",
    "the shipping partner",
    "the database",
    "a returning user",
    "the dashboard",
    "the city council",
)
VERBS = (
    "reported",
    "fixed",
    "delayed",
    "approved",
    "rejected",
    "measured",
    "improved",
    "cached",
    "summarized",
    "translated",
    "deployed",
    "rolled back",
    "indexed",
    "ranked",
    "refunded",
    "scheduled",
    "reviewed",
    "monitored",
    "exported",
    "archived",
)
OBJECTS = (
    "the invoice for last month",
    "a slow checkout page",
    "the latency of every request",
    "twelve damaged parcels",
    "the quarterly revenue forecast",
    "an error in the login flow",
    "the embeddings of all product descriptions",
    "a duplicate order",
    "the weather alerts",
    "the onboarding guide",
    "a memory leak in the worker",
    "the contract renewal",
    "customer feedback from the survey",
    "the river water levels",
    "a broken link on the docs site",
    "the cost per accepted answer",
    "a new pricing plan",
    "the audio transcripts of the meeting",
    "the history of the museum",
    "the football match results",
)
TAILS = (
    "before the deadline",
    "after a long discussion",
    "without any warning",
    "during the night",
    "for the second time this week",
    "as the documentation suggests",
    "because of a timeout",
    "in less than an hour",
    "while the cluster was busy",
    "at the request of the client",
    "to reduce the queue",
    "despite the heavy rain",
    "once the tests passed",
    "with help from the vendor",
    "on the staging environment",
)
QUESTIONS = (
    "How do I reset my password",
    "Why was my card charged twice",
    "When will my order arrive",
    "What is the capital of France",
    "Which plan includes priority support",
    "How can I export my data",
    "Is the service down right now",
    "Where can I find the invoice",
)


def _sentence(rng: random.Random) -> str:
    kind = rng.random()
    if kind < 0.15:
        return rng.choice(QUESTIONS) + "?"
    parts = [rng.choice(SUBJECTS), rng.choice(VERBS), rng.choice(OBJECTS)]
    if kind < 0.75:
        parts.append(rng.choice(TAILS))
    text = " ".join(parts)
    return text[0].upper() + text[1:] + "."


def make_text(rng: random.Random, min_words: int = 10, max_words: int = 60) -> str:
    """One text of min_words..max_words words (target length drawn uniformly)."""
    target = rng.randint(min_words, max_words)
    words: list[str] = []
    while len(words) < target:
        words.extend(_sentence(rng).split())
    words = words[:target]
    text = " ".join(words)
    return text if text.endswith((".", "?")) else text.rstrip(",") + "."


def make_texts(n: int, seed: int = 13, min_words: int = 10, max_words: int = 60) -> list[str]:
    """`n` deterministic texts of min_words..max_words words each."""
    if not 1 <= min_words <= max_words:
        raise ValueError("need 1 <= min_words <= max_words")
    rng = random.Random(seed)
    return [make_text(rng, min_words, max_words) for _ in range(n)]
