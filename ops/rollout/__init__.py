"""Rollouts: a candidate recipe version beside the current pool, compared, promoted or aborted."""
