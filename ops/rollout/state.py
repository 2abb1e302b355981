"""A rollout record (ops/rollouts/<pool>-<time>.json) and the steps it may take.

    planned --start--> started --promote--> promoted
                          |  \\--abort----> aborted
                          |   \\-rollback-> rolled_back   (the gate failed: automatic abort)
                          \\--weight------> started        (a new canary share)
    promoted --revert--> reverted    (the old pool serves again; it ran all along)

Every step appends to `steps` with its time and the traffic seen during it; the quality
comparison and the gate's verdict are written when measured.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

ROLLOUTS = Path(__file__).resolve().parents[1] / "rollouts"

State = Literal["planned", "started", "promoted", "aborted", "rolled_back", "reverted"]
StepName = Literal["plan", "start", "weight", "eval", "promote", "abort", "rollback", "revert"]

# step -> (states it may start from, state it leaves)
TRANSITIONS: dict[str, tuple[frozenset[str], str | None]] = {
    "start": (frozenset({"planned"}), "started"),
    "weight": (frozenset({"started"}), "started"),
    "eval": (frozenset({"started"}), None),
    "promote": (frozenset({"started"}), "promoted"),
    "abort": (frozenset({"planned", "started"}), "aborted"),
    "rollback": (frozenset({"planned", "started"}), "rolled_back"),
    # a promoted candidate taken out again: the old pool still runs until the set is redeployed
    "revert": (frozenset({"promoted"}), "reverted"),
}
TERMINAL: frozenset[str] = frozenset({"promoted", "aborted", "rolled_back", "reverted"})


class TransitionError(ValueError):
    """A step that the record's state does not allow."""


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Step(BaseModel):
    name: StepName
    at: str
    finished: str | None = None
    detail: dict[str, Any] = Field(default_factory=dict)


class RolloutRecord(BaseModel):
    id: str
    pool: str = Field(description="The current pool (recipe id) the candidate rolls out beside")
    model: str
    current: str = Field(description="id@version+hash serving the pool now")
    candidate: str = Field(description="id@version+hash of the candidate")
    candidate_name: str
    candidate_app: str
    mode: Literal["canary", "shadow"] = "canary"
    weight: float = Field(0.0, ge=0, le=1)
    state: State = "planned"
    created: str
    updated: str
    steps: list[Step] = Field(default_factory=list)
    evals: dict[str, Any] | None = None
    verdict: dict[str, Any] | None = None
    decision: str | None = None
    drained: dict[str, Any] | None = Field(
        None,
        description="The current pool's deployment options before promote drained it (and "
        "whether Serve's scale API did it): what revert restores",
    )

    def can(self, step: str) -> bool:
        sources, _ = TRANSITIONS[step]
        return self.state in sources

    def advance(self, step: str, detail: dict[str, Any] | None = None, **changes: Any) -> Step:
        """Record a step that happened; raises TransitionError if the state forbids it."""
        sources, target = TRANSITIONS[step]
        if self.state not in sources:
            raise TransitionError(
                f"rollout {self.id} is {self.state}: '{step}' needs one of "
                f"{', '.join(sorted(sources)) or '(a new rollout)'}"
            )
        entry = Step(name=step, at=now(), detail=detail or {})  # type: ignore[arg-type]
        self.steps.append(entry)
        for key, value in changes.items():
            setattr(self, key, value)
        if target is not None:
            self.state = target  # type: ignore[assignment]
        self.updated = entry.at
        return entry

    @property
    def active(self) -> bool:
        return self.state not in TERMINAL

    def path(self, root: Path = ROLLOUTS) -> Path:
        return root / f"{self.id}.json"

    def save(self, root: Path = ROLLOUTS) -> Path:
        root.mkdir(parents=True, exist_ok=True)
        path = self.path(root)
        path.write_text(json.dumps(self.model_dump(mode="json"), indent=2) + "\n")
        return path


def new_record(pool: str, model: str, current: str, candidate: str, **fields: Any) -> RolloutRecord:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    at = now()
    record = RolloutRecord(
        id=f"{pool}-{stamp}",
        pool=pool,
        model=model,
        current=current,
        candidate=candidate,
        created=at,
        updated=at,
        **fields,
    )
    record.steps.append(
        Step(name="plan", at=at, detail={"candidate": candidate, "current": current})
    )
    return record


def load_record(path: Path) -> RolloutRecord:
    return RolloutRecord.model_validate_json(path.read_text())


def latest(pool: str | None = None, root: Path = ROLLOUTS, active_only: bool = False):
    """The newest record (of a pool), or None."""
    paths = sorted(root.glob(f"{pool or '*'}-*.json"), key=lambda p: p.stem[-16:])
    for path in reversed(paths):
        record = load_record(path)
        if pool is not None and record.pool != pool:
            continue
        if active_only and not record.active:
            continue
        return record
    return None
