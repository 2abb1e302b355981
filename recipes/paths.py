"""Where the project's files are: the one place that knows the project root."""

from __future__ import annotations

from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
CONFIG_ROOT = PROJECT_ROOT / "serve_configs"
"""What a user runs: production recipes, recipe sets and their rendered Serve configs."""
EXPERIMENTS_ROOT = PROJECT_ROOT / "ops" / "gpu" / "experiments"
"""Recipes and sets that exist for a measurement (proofs, isolation runs), not for users."""
RESULTS_ROOT = PROJECT_ROOT / "results"
"""Measurement records; results/INDEX.md lists them."""
