"""POST /v1/feedback: the outcome of a served request (the denominator of cost per outcome)."""

from __future__ import annotations

from pydantic import BaseModel, Field

from app.protocol.common import RequestModel


class FeedbackRequest(RequestModel):
    request_id: str = Field(min_length=1, description="The x-request-id of the response")
    accepted: bool = Field(description="Did the caller accept (use) the result?")
    score: float | None = Field(None, description="Optional quality score from the caller")
    comment: str | None = Field(None, max_length=2000)


class FeedbackResponse(BaseModel):
    request_id: str
    accepted: bool
    matched: bool = Field(description="False if this gateway replica did not serve the request")
    model: str | None = None
    pool: str | None = None
