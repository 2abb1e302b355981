"""POST /v1/feedback: mark a served request's outcome as accepted or not."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request

from app.protocol.feedback import FeedbackRequest, FeedbackResponse
from app.routes.deps import caller
from telemetry import metrics
from telemetry.metrics import POOL_TAGS

router = APIRouter(tags=["feedback"])
logger = logging.getLogger("ray.serve")


@router.post("/v1/feedback", response_model=FeedbackResponse)
async def feedback(body: FeedbackRequest, request: Request) -> FeedbackResponse:
    # only the caller's tenant's own requests match: another tenant's id reads as unknown
    labels = request.app.state.outcomes.labels(body.request_id, caller(request).tenant)
    tags = labels or dict.fromkeys(POOL_TAGS, "unknown")
    metrics.outcomes_total().inc(1, tags={**tags, "accepted": str(body.accepted).lower()})
    logger.info(
        "feedback",
        extra={
            "event": "feedback",
            "platform_request_id": body.request_id,
            **tags,
            "accepted": body.accepted,
            "score": body.score,
        },
    )
    return FeedbackResponse(
        request_id=body.request_id,
        accepted=body.accepted,
        matched=labels is not None,
        model=tags["model"] if labels else None,
        pool=tags["pool"] if labels else None,
    )
