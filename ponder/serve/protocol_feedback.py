"""`POST /v1/feedback` on the wire: a thumbs up / down on one returned completion, or a preference
between two completions of the same conversation. Completions are named as the server returned
them: the response id (`chatcmpl-...`, `resp_...`) and the choice index."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ponder.serve.protocol_common import MAX_BEST_OF


class CompletionRef(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str = Field(min_length=1, max_length=100, description="the response id the server returned")
    choice: int = Field(default=0, ge=0, lt=MAX_BEST_OF, description="the choice index within that response")


class ThumbsFeedback(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["thumbs"]
    completion: CompletionRef
    rating: Literal["up", "down"]
    comment: str | None = Field(default=None, max_length=4000)
    source: str = Field(default="api", min_length=1, max_length=40, description="who gave it: api, web, ...")


class PairwiseFeedback(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["pairwise"]
    chosen: CompletionRef
    rejected: CompletionRef
    comment: str | None = Field(default=None, max_length=4000)
    source: str = Field(default="api", min_length=1, max_length=40, description="who gave it: api, web, ...")

    @model_validator(mode="after")
    def _two_completions(self):
        if self.chosen == self.rejected:
            raise ValueError("chosen and rejected name the same completion: a preference needs two")
        return self


FeedbackRequest = ThumbsFeedback | PairwiseFeedback  # told apart by `type`


class FeedbackResponse(BaseModel):
    id: str
    object: Literal["feedback"] = "feedback"
    created: int
    type: Literal["thumbs", "pairwise"]
