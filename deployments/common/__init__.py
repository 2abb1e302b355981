"""Pieces every model deployment shares: model sources, batching and thread settings."""
