"""`python -m ops.rollout`: roll a candidate recipe version out beside the pool serving its
alias now, compare it, and promote or abort it, on the running application.

    plan    CANDIDATE            check it can start; write its record in ops/rollouts/
    start   CANDIDATE [--auto]   candidate beside current (canary share or shadow), eval + gate:
                                 a failed gate rolls back at once; --auto promotes on a pass
    status  [POOL]               the record and the routing the Gateway applies now
    weight  POOL SHARE           a new canary share
    eval    POOL                 (re)run the quality comparison and the gate
    promote POOL                 the candidate takes all traffic; the old pool is drained to
                                 zero replicas (no other pool restarts)
    abort POOL                   the candidate is removed (after a promote: the old pool is
                                 scaled back up first, then serves again)

Connects to the Ray cluster at --address, or RAY_ADDRESS, or else the one `make serve`
(`python -m app.launcher`) runs: it writes its address to .run/platform.json.
"""

from __future__ import annotations

import json
import os
import sys

import typer

from ops.rollout.runner import Live, Rollouts
from ops.rollout.serve_config import gateway_config
from ops.rollout.state import TransitionError

app = typer.Typer(help=__doc__, no_args_is_help=True, add_completion=False)

ADDRESS = typer.Option(
    None, help="Ray cluster address (default: RAY_ADDRESS, else .run/platform.json)"
)
TRAFFIC = typer.Option(
    None, help="ops.loadgen scenario run during each step (default per task; 'none' for none)"
)


def _connect(address: str | None) -> Rollouts:
    import ray

    from app.launcher import read_state, state_file

    state = read_state()
    address = address or os.environ.get("RAY_ADDRESS") or (state or {}).get("ray_address")
    if not address:
        _fail(
            f"no running application found ({state_file()} is written by `make serve` / "
            "`python -m app.launcher`): start one, or give --address (or RAY_ADDRESS)"
        )
    ray.init(address=address, namespace="serve", log_to_driver=False, logging_level="WARNING")
    return Rollouts(Live(), log=typer.echo)


def _refresh_decision(pool: str) -> None:
    """The pool's decision record links its rollout records: rewrite it (newest version)."""
    from ops.recipes.decision import decision_path, render_decision
    from recipes.loader import load_recipe, recipe_versions

    recipe = load_recipe(f"{pool}@{recipe_versions(pool)[-1]}")
    decision_path(recipe).write_text(render_decision(recipe))


def _fail(message: str) -> None:
    typer.echo(message, err=True)
    sys.exit(1)


@app.command()
def plan(
    candidate: str,
    mode: str = typer.Option("canary", help="canary or shadow"),
    weight: float = typer.Option(0.1, min=0, max=1, help="canary share of the pool's traffic"),
    address: str | None = ADDRESS,
) -> None:
    """Check a candidate (recipe-id@version) can roll out; write its record."""
    try:
        record = _connect(address).plan(candidate, mode, weight)
    except ValueError as e:
        _fail(str(e))
    typer.echo(f"planned {record.id}: {record.current} -> {record.candidate} ({mode} {weight:g})")


@app.command()
def start(
    candidate: str,
    mode: str = typer.Option("canary", help="canary or shadow"),
    weight: float = typer.Option(0.1, min=0, max=1, help="canary share of the pool's traffic"),
    evaluate: bool = typer.Option(True, "--eval/--no-eval", help="compare and apply the gate"),
    auto: bool = typer.Option(False, "--auto", help="promote when the gate passes"),
    load_s: float = typer.Option(
        0.0,
        help="seconds of the traffic scenario on both pools in the same run (3 rounds after a "
        "warm-up); a gate checking load_* metrics gets 30 s when none is given",
    ),
    traffic: str | None = TRAFFIC,
    address: str | None = ADDRESS,
) -> None:
    """Start a candidate beside the current pool; with --eval (default) its gate decides."""
    rollouts = _connect(address)
    try:
        record = rollouts.plan(candidate, mode, weight)
        rollouts.start(record, traffic)
        if evaluate and record.state == "started":
            rollouts.evaluate(record, load_s)
            rollouts.decide(record, auto, traffic)
    except (ValueError, TransitionError) as e:
        _fail(str(e))
    _refresh_decision(record.pool)
    typer.echo(f"{record.id}: {record.state} ({record.path(rollouts.root)})")
    if record.decision:
        typer.echo(record.decision)


@app.command()
def status(pool: str | None = typer.Argument(None), address: str | None = ADDRESS) -> None:
    """The latest record (of a pool) and the routing the live Gateway applies."""
    from ops.rollout.state import latest

    rollouts = _connect(address)
    record = latest(pool, rollouts.root)
    routing = gateway_config(rollouts.live.config())
    live = [
        {
            "pool": r.current,
            "candidate": r.candidate_name,
            "mode": r.mode,
            "weight": r.weight,
            "current_drained": r.current_drained,
            "serving_alias": r.candidate.recipe.ref if r.mode == "promoted" else None,
        }
        for r in routing.rollouts
    ]
    summary = None
    if record is not None:
        summary = {
            "id": record.id,
            "state": record.state,
            "current": record.current,
            "candidate": record.candidate,
            "verdict": (record.verdict or {}).get("passed"),
            "decision": record.decision,
            "steps": [s.name for s in record.steps],
        }
    typer.echo(json.dumps({"record": summary, "live_routing": live}, indent=2))


@app.command()
def weight(
    pool: str,
    share: float = typer.Argument(..., min=0, max=1),
    mode: str | None = typer.Option(None, help="switch to canary or shadow"),
    traffic: str | None = TRAFFIC,
    address: str | None = ADDRESS,
) -> None:
    """Give the candidate a new canary share (or switch shadow <-> canary)."""
    rollouts = _connect(address)
    try:
        rollouts.reweight(rollouts.record(pool), share, traffic, mode)
    except (ValueError, TransitionError) as e:
        _fail(str(e))


@app.command("eval")
def evaluate_command(
    pool: str,
    rollback: bool = typer.Option(True, help="roll back when the gate fails"),
    auto: bool = typer.Option(False, "--auto", help="promote when the gate passes"),
    address: str | None = ADDRESS,
) -> None:
    """Run the quality comparison and the gate for the pool's rollout."""
    rollouts = _connect(address)
    try:
        record = rollouts.record(pool)
        rollouts.evaluate(record)
        if rollback or auto:
            rollouts.decide(record, auto)
    except (ValueError, TransitionError) as e:
        _fail(str(e))


@app.command()
def promote(pool: str, traffic: str | None = TRAFFIC, address: str | None = ADDRESS) -> None:
    """The candidate answers all the pool's traffic; the old pool is drained to zero replicas."""
    rollouts = _connect(address)
    try:
        record = rollouts.record(pool)
        if record.verdict is not None and not record.verdict.get("passed"):
            _fail(f"{record.id} failed its gate: abort it")
        rollouts.promote(record, traffic)
    except (ValueError, TransitionError) as e:
        _fail(str(e))
    _refresh_decision(pool)
    typer.echo(
        f"{record.id}: promoted, {pool} drained to zero replicas (`abort {pool}` reverts). "
        f"Make it permanent: name {record.candidate.split('+')[0]} in the recipe set and "
        "re-render (`python -m ops.recipes render`)"
    )


@app.command()
def abort(pool: str, traffic: str | None = TRAFFIC, address: str | None = ADDRESS) -> None:
    """Remove the candidate; the current pool serves everything again (after a promote: the
    drained pool is scaled back up first)."""
    rollouts = _connect(address)
    try:
        rollouts.abort(rollouts.record(pool, promoted_too=True), traffic)
    except (ValueError, TransitionError) as e:
        _fail(str(e))
    _refresh_decision(pool)
