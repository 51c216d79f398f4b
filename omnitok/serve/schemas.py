"""Request and response bodies. Field names follow the service omnitok grew from (count-tokens:
token_count, model_id, strategy_used, is_exact, metadata.encoding; compress and validate
likewise); types are strict (a number is not a string), unknown fields are ignored."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field

DEFAULT_TARGET_COMPRESSION = 0.944  # the earlier service's default, when no budget form is given


class _Body(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")


class _CountOptions(_Body):
    model_id: str | None = Field(None, description="Model id (gpt-4o, claude-sonnet-4-5, ...). Default: the server's.")
    encoding: str | None = Field(None, description="Count with an encoding directly (o200k_base, cl100k_base).")
    online: bool | None = Field(
        None,
        validation_alias=AliasChoices("online", "prefer_online"),
        description="Use the provider's count API where one exists (the server's credentials). Default: the server's.",
    )
    strict: bool | None = Field(None, description="Exact counts only: 503 where only an estimate is available.")


class CountRequest(_CountOptions):
    text: str | None = Field(None, description="The text to count.")
    messages: list[dict[str, Any]] | None = Field(None, description="A chat `messages` array, instead of text.")
    system: str | list[dict[str, Any]] | None = Field(None, description="With messages: the request's system prompt.")
    tools: list[dict[str, Any]] | None = Field(None, description="With messages: tool definitions.")


class CountResponse(BaseModel):
    token_count: int
    model_id: str
    strategy_used: str
    is_exact: bool
    metadata: dict[str, Any]


class BatchRequest(_CountOptions):
    texts: list[str] | None = Field(None, description="Texts, one result row each.")
    records: list[Any] | None = Field(
        None, description="Records as JSONL lines hold them: objects with text or messages (or --field), or strings."
    )
    field: str | list[str] | None = Field(None, description="What to count in each record: a (dotted) field or fields.")
    id_field: str | None = Field("id", description="Copied to the row as `id` when present.")
    on_error: Literal["stop", "skip", "record"] = Field(
        "stop", description="A bad record: stop (422 naming it), skip (no row), record (an error row)."
    )


class BatchResponse(BaseModel):
    results: list[dict[str, Any]] = Field(description="Rows as `omnitok count --format jsonl` writes them.")
    summary: dict[str, Any] = Field(description="As `omnitok count --summary` gives it.")


class CompressRequest(_Body):
    context: str | list[str] | list[dict[str, Any]] = Field(description="The text, or its passages.")
    query: str | None = None
    model_id: str | None = None
    target_compression: float | None = Field(
        None, ge=0, le=1, description=f"Share of tokens to remove (default {DEFAULT_TARGET_COMPRESSION} if no budget)."
    )
    budget: int | None = Field(None, ge=0, description="Tokens to keep, at most.")
    ratio: float | None = Field(None, ge=0, le=1, description="Share of tokens to keep.")
    method: Literal["auto", "combined", "bm25", "dense"] | None = None
    gap_marker: str | None = None


class CompressResponse(BaseModel):
    original_tokens: int
    compressed_tokens: int
    compression_ratio: float = Field(description="compressed_tokens / original_tokens")
    quality_score: float
    compressed_text: str
    model_id: str
    is_exact_tokenization: bool
    method: str
    budget: int
    kept_units: int
    total_units: int
    duplicates: int
    kept_passages: list[int]


class ValidateRequest(_Body):
    original: str
    compressed: str
    metrics: list[str] = Field(["rouge-l"], description="rouge-l, compression, bertscore")
    model_id: str | None = Field(None, description="For the compression metric.")
    min_rouge_l: float | None = None
    max_ratio: float | None = None
    min_bertscore: float | None = None
    stem: bool = False


class ValidateResponse(BaseModel):
    passed: bool
    rouge_l_score: float | None = None
    bertscore_f1: float | None = None
    details: dict[str, Any]
    failures: list[str]


class CacheStatsResponse(BaseModel):
    cache_enabled: bool
    stats: dict[str, Any]


class StatsResponse(BaseModel):
    service: str
    status: str
    metrics: dict[str, Any]


class ErrorDetail(BaseModel):
    code: str
    message: str
    hint: str | None = None


class ErrorResponse(BaseModel):
    error: ErrorDetail
