"""What runs an embedding model: sentence-transformers on CPU or GPU."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from deployments.common.errors import InputTooLong, InvalidRequest
from deployments.common.threads import set_torch_threads
from recipes.engines import EmbeddingEngineConfig

_TORCH_DTYPES = {"float32": "float32", "float16": "float16", "bfloat16": "bfloat16"}


class EmbeddingEngine:
    """Tokenizes, checks lengths and encodes; knows nothing about HTTP or Ray.

    Text is tokenized once: the ids that are counted and checked are the ids the model reads.
    """

    def __init__(self, model_dir: Path, config: EmbeddingEngineConfig):
        import torch
        from sentence_transformers import SentenceTransformer

        set_torch_threads(config.num_threads)
        self.config = config
        self.model = SentenceTransformer(
            str(model_dir),
            device=config.device,
            local_files_only=True,
            model_kwargs={"dtype": getattr(torch, _TORCH_DTYPES[config.dtype])},
        )
        self.tokenizer = self.model.tokenizer
        # A Hugging Face fast tokenizer is not safe to share between threads that use different
        # truncation settings ("Already borrowed"): every tokenizer call takes this lock.
        self._tokenize_lock = threading.Lock()
        model_max = self.model.get_max_seq_length() or self.tokenizer.model_max_length
        self.max_input_tokens = min(config.max_input_tokens or model_max, model_max)
        self.model.max_seq_length = self.max_input_tokens
        # sentence-transformers 6.1 renamed the getter; GPU images may carry 6.0.
        dimension_of = getattr(self.model, "get_embedding_dimension", None) or (
            self.model.get_sentence_embedding_dimension
        )
        self.dimensions = int(dimension_of())
        self._pad_id = self.tokenizer.pad_token_id or 0
        self._token_types = "token_type_ids" in self.tokenizer.model_input_names

    # -- tokens -------------------------------------------------------------------------------

    def tokenize(self, texts: list[str], truncate: bool = False) -> list[list[int]]:
        """Token ids of each text, special tokens included; cut at max_input_tokens (keeping
        the closing special tokens) only when `truncate`."""
        with self._tokenize_lock:
            if truncate:
                encoded = self.tokenizer(
                    texts,
                    add_special_tokens=True,
                    truncation=True,
                    max_length=self.max_input_tokens,
                )
            else:
                encoded = self.tokenizer(texts, add_special_tokens=True, truncation=False)
        return encoded["input_ids"]

    def check_lengths(self, token_counts: list[int], truncate: bool) -> list[int]:
        """Raise InputTooLong for an over-long input unless truncating; return billed tokens."""
        if truncate:
            return [min(n, self.max_input_tokens) for n in token_counts]
        for i, n in enumerate(token_counts):
            if n > self.max_input_tokens:
                raise InputTooLong(
                    f"input[{i}] has {n} tokens, more than this model's limit of "
                    f"{self.max_input_tokens}; shorten it or send truncate=true",
                    param=f"input[{i}]",
                )
        return token_counts

    def check_token_ids(self, batch_ids: list[list[int]]) -> None:
        """Token ids a client sent must belong to this model's vocabulary."""
        vocab = self.tokenizer.vocab_size
        for i, ids in enumerate(batch_ids):
            bad = next((t for t in ids if t < 0 or t >= vocab), None)
            if bad is not None:
                raise InvalidRequest(
                    f"input[{i}] holds token id {bad}, outside this model's vocabulary "
                    f"(0..{vocab - 1})",
                    param=f"input[{i}]",
                )

    # -- compute ------------------------------------------------------------------------------

    def encode_ids(self, batch_ids: list[list[int]]) -> np.ndarray:
        """float32 array of shape (len(batch_ids), dimensions).

        Inputs run longest-first in slices of encode_batch_size (least padding), as
        SentenceTransformer.encode does.
        """
        order = sorted(range(len(batch_ids)), key=lambda i: -len(batch_ids[i]))
        out = np.empty((len(batch_ids), self.dimensions), dtype=np.float32)
        step = self.config.encode_batch_size
        for start in range(0, len(order), step):
            index = order[start : start + step]
            out[index] = self._forward([batch_ids[i] for i in index])
        return out

    def encode(self, texts: list[str]) -> np.ndarray:
        """Embeddings of texts (truncated at max_input_tokens): the in-process reference path."""
        return self.encode_ids(self.tokenize(texts, truncate=True))

    def _forward(self, batch_ids: list[list[int]]) -> np.ndarray:
        import torch

        width = max(len(ids) for ids in batch_ids)
        input_ids = np.full((len(batch_ids), width), self._pad_id, dtype=np.int64)
        mask = np.zeros((len(batch_ids), width), dtype=np.int64)
        for row, ids in enumerate(batch_ids):
            input_ids[row, : len(ids)] = ids
            mask[row, : len(ids)] = 1
        device = self.model.device
        features = {
            "input_ids": torch.from_numpy(input_ids).to(device),
            "attention_mask": torch.from_numpy(mask).to(device),
        }
        if self._token_types:
            features["token_type_ids"] = torch.zeros_like(features["input_ids"])
        with torch.inference_mode():
            vectors = self.model(features)["sentence_embedding"].float()
        if self.config.normalize:
            vectors = torch.nn.functional.normalize(vectors, p=2, dim=1)
        return vectors.cpu().numpy().astype(np.float32)


def reduce_dimensions(vectors: np.ndarray, dimensions: int | None, normalize: bool) -> np.ndarray:
    """Keep the first `dimensions` components (OpenAI's `dimensions`), re-normalized if asked."""
    if dimensions is None or dimensions >= vectors.shape[1]:
        return vectors
    cut = vectors[:, :dimensions]
    if normalize:
        norms = np.linalg.norm(cut, axis=1, keepdims=True)
        cut = cut / np.maximum(norms, 1e-12)
    return cut.astype(np.float32)
