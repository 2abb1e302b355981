"""What runs a reranker: a CrossEncoder, or the cosine of bi-encoder embeddings."""

from __future__ import annotations

import copy
import threading
from pathlib import Path

import numpy as np

from deployments.common.errors import InputTooLong
from deployments.common.threads import set_torch_threads
from recipes.engines import RerankEngineConfig


class RerankEngine:
    def __init__(self, model_dir: Path, config: RerankEngineConfig):
        set_torch_threads(config.num_threads)
        self.config = config
        if config.scoring == "cross-encoder":
            self._model = _load_cross_encoder(model_dir, config)
            self.tokenizer = self._model.tokenizer
            model_max = self._model.max_length or self.tokenizer.model_max_length
        else:
            from sentence_transformers import SentenceTransformer

            self._model = SentenceTransformer(
                str(model_dir), device=config.device, local_files_only=True
            )
            self.tokenizer = self._model.tokenizer
            model_max = self._model.get_max_seq_length()
        self.max_input_tokens = min(config.max_input_tokens or model_max, model_max)
        # Fast tokenizers break when threads share one with different settings: counting uses
        # its own copy, and scoring (which tokenizes with truncation) runs one batch at a time.
        self._count_tokenizer = copy.deepcopy(self.tokenizer)
        self._score_lock = threading.Lock()
        if config.scoring == "cross-encoder":
            self._model.max_length = self.max_input_tokens
        else:
            self._model.max_seq_length = self.max_input_tokens

    def count_tokens(self, query: str, documents: list[str]) -> list[int]:
        """Tokens the model reads per document: the pair for a cross-encoder, the document
        alone for a bi-encoder (the query is counted once, separately)."""
        if self.config.scoring == "cross-encoder":
            enc = self._count_tokenizer([query] * len(documents), documents, truncation=False)
        else:
            enc = self._count_tokenizer(documents, truncation=False)
        return [len(ids) for ids in enc["input_ids"]]

    def query_tokens(self, query: str) -> int:
        return len(self._count_tokenizer(query, truncation=False)["input_ids"])

    def check_lengths(self, query: str, documents: list[str], truncate: bool) -> int:
        """Raise InputTooLong unless truncating; return the tokens billed for the request."""
        counts = self.count_tokens(query, documents)
        if self.config.scoring == "bi-encoder":
            q = self.query_tokens(query)
            if q > self.max_input_tokens and not truncate:
                raise InputTooLong(
                    f"query has {q} tokens, more than this model's limit of "
                    f"{self.max_input_tokens}; shorten it or send truncate=true",
                    param="query",
                )
            counts = [*counts, q]
        if not truncate:
            for i, n in enumerate(counts[: len(documents)]):
                if n > self.max_input_tokens:
                    raise InputTooLong(
                        f"documents[{i}] makes {n} tokens with the query, more than this model's "
                        f"limit of {self.max_input_tokens}; shorten it or send truncate=true",
                        param=f"documents[{i}]",
                    )
        return sum(min(n, self.max_input_tokens) for n in counts)

    def score(self, pairs: list[tuple[str, str]]) -> np.ndarray:
        """Relevance of each (query, document) pair: sigmoid of the cross-encoder's logit
        (0..1), or cosine similarity (-1..1) for bi-encoder scoring."""
        with self._score_lock:
            return self._score(pairs)

    def _score(self, pairs: list[tuple[str, str]]) -> np.ndarray:
        if self.config.scoring == "cross-encoder":
            scores = self._model.predict(
                pairs,
                batch_size=self.config.predict_batch_size,
                show_progress_bar=False,
                convert_to_numpy=True,
            )
            return np.asarray(scores, dtype=np.float32).reshape(-1)
        queries = sorted({q for q, _ in pairs})
        docs = [d for _, d in pairs]
        vectors = self._model.encode(
            queries + docs,
            batch_size=self.config.predict_batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        query_vec = dict(zip(queries, vectors[: len(queries)], strict=True))
        doc_vecs = vectors[len(queries) :]
        return np.array(
            [float(np.dot(query_vec[q], d)) for (q, _), d in zip(pairs, doc_vecs, strict=True)],
            dtype=np.float32,
        )


def _load_cross_encoder(model_dir: Path, config: RerankEngineConfig):
    import json

    import torch
    from sentence_transformers import CrossEncoder

    architectures = json.loads((model_dir / "config.json").read_text()).get("architectures") or []
    has_head = any(a.endswith("ForSequenceClassification") for a in architectures)
    if not has_head and not config.allow_untrained_head:
        raise ValueError(
            f"{model_dir} has no sequence-classification head, so a cross-encoder built on it "
            "would score at random; use a trained cross-encoder or scoring: bi-encoder"
        )
    if not has_head:
        torch.manual_seed(0)  # a fresh head must still score the same way on every replica
    model = CrossEncoder(str(model_dir), num_labels=1, device=config.device, local_files_only=True)
    return model
