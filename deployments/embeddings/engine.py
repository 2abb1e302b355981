"""What runs an embedding model: sentence-transformers on CPU or GPU."""

from __future__ import annotations

import copy
import threading
from pathlib import Path

import numpy as np

from deployments.common.errors import InputTooLong, InvalidRequest
from deployments.common.threads import set_torch_threads
from deployments.embeddings.config import EmbeddingEngineConfig

_TORCH_DTYPES = {"float32": "float32", "float16": "float16", "bfloat16": "bfloat16"}


class EmbeddingEngine:
    """Tokenizes, checks lengths and encodes; knows nothing about HTTP or Ray."""

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
        # Hugging Face fast tokenizers are not safe to share between threads that use different
        # padding/truncation settings ("Already borrowed"): counting gets its own copy, and the
        # batches that encode concurrently take turns tokenizing (the forward pass runs freely).
        self._count_tokenizer = copy.deepcopy(self.tokenizer)
        self._tokenize_lock = threading.Lock()
        # sentence-transformers 6.1 renamed tokenize() to preprocess(); GPU images may carry 6.0.
        self._preprocess = getattr(self.model, "preprocess", None) or self.model.tokenize
        model_max = self.model.get_max_seq_length() or self.tokenizer.model_max_length
        self.max_input_tokens = min(config.max_input_tokens or model_max, model_max)
        self.model.max_seq_length = self.max_input_tokens
        # sentence-transformers 6.1 renamed the getter; GPU images may carry 6.0.
        dimension_of = getattr(self.model, "get_embedding_dimension", None) or (
            self.model.get_sentence_embedding_dimension
        )
        self.dimensions = int(dimension_of())

    # -- validation ---------------------------------------------------------------------------

    def count_tokens(self, texts: list[str]) -> list[int]:
        """Tokens each text becomes, special tokens included (what the model actually reads)."""
        encoded = self._count_tokenizer(texts, add_special_tokens=True, truncation=False)
        encoded = encoded["input_ids"]
        return [len(ids) for ids in encoded]

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

    # -- compute ------------------------------------------------------------------------------

    def encode(self, texts: list[str]) -> np.ndarray:
        """float32 array of shape (len(texts), dimensions); truncates at max_input_tokens.

        Texts run longest-first in slices of encode_batch_size, as SentenceTransformer.encode
        does (least padding), with the tokenizer guarded so batches may encode concurrently.
        """
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        out = np.empty((len(texts), self.dimensions), dtype=np.float32)
        step = self.config.encode_batch_size
        for start in range(0, len(texts), step):
            index = order[start : start + step]
            with self._tokenize_lock:
                features = self._preprocess([texts[i] for i in index])
            out[index] = self._forward(features)
        return out

    def encode_token_ids(self, batch_ids: list[list[int]]) -> np.ndarray:
        """Embeddings of inputs given as token ids of this model's own tokenizer."""
        import torch

        vocab = self.tokenizer.vocab_size
        for i, ids in enumerate(batch_ids):
            bad = [t for t in ids if t < 0 or t >= vocab]
            if bad:
                raise InvalidRequest(
                    f"input[{i}] holds token id {bad[0]}, outside this model's vocabulary "
                    f"(0..{vocab - 1})",
                    param=f"input[{i}]",
                )
        width = max(len(ids) for ids in batch_ids)
        pad = self.tokenizer.pad_token_id or 0
        input_ids = torch.tensor([ids + [pad] * (width - len(ids)) for ids in batch_ids])
        mask = torch.tensor([[1] * len(ids) + [0] * (width - len(ids)) for ids in batch_ids])
        features = {"input_ids": input_ids, "attention_mask": mask}
        if "token_type_ids" in self.tokenizer.model_input_names:
            features["token_type_ids"] = torch.zeros_like(input_ids)
        return self._forward(features)

    def _forward(self, features: dict) -> np.ndarray:
        import torch
        from sentence_transformers.util import batch_to_device

        features = batch_to_device(features, self.model.device)
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
