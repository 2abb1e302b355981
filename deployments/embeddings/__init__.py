"""Text embeddings: sentence-transformers models behind a batching Ray Serve deployment."""
