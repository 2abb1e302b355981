"""Rerankers: cross-encoder or bi-encoder scoring behind a batching Ray Serve deployment."""
