"""POST /v1/rerank, the Cohere/Jina shape."""

from __future__ import annotations

import uuid

from pydantic import BaseModel, Field, field_validator

from app.protocol.common import RequestModel
from deployments.contract import Scores


class RerankDocument(BaseModel):
    text: str


class RerankRequest(RequestModel):
    model: str
    query: str = Field(min_length=1)
    documents: list[str | RerankDocument] = Field(min_length=1)
    top_n: int | None = Field(None, ge=1, description="Return only the N best documents")
    return_documents: bool = False
    truncate: bool | None = Field(
        None, description="Over-long pairs: true truncates, false is a 400; default from the recipe"
    )

    @field_validator("documents")
    @classmethod
    def _no_empty_document(cls, docs):
        for i, doc in enumerate(docs):
            text = doc if isinstance(doc, str) else doc.text
            if not text:
                raise ValueError(f"documents[{i}] must not be empty")
        return docs

    def document_texts(self) -> list[str]:
        return [d if isinstance(d, str) else d.text for d in self.documents]


class RerankResult(BaseModel):
    index: int
    relevance_score: float
    document: RerankDocument | None = None


class RerankUsage(BaseModel):
    total_tokens: int


class RerankResponse(BaseModel):
    id: str
    model: str
    results: list[RerankResult]
    usage: RerankUsage


def response_from_scores(
    scores: Scores, request: RerankRequest, documents: list[str], model: str
) -> RerankResponse:
    """Documents ordered by relevance (a stable sort: equal scores keep the client's order),
    cut to top_n, with their text when asked."""
    values = scores.scores.tolist()
    order = sorted(range(len(values)), key=lambda i: -values[i])
    if request.top_n is not None:
        order = order[: request.top_n]
    return RerankResponse(
        id=f"rerank-{uuid.uuid4().hex}",
        model=model,
        results=[
            RerankResult(
                index=i,
                relevance_score=values[i],
                document=RerankDocument(text=documents[i]) if request.return_documents else None,
            )
            for i in order
        ],
        usage=RerankUsage(total_tokens=scores.tokens),
    )
