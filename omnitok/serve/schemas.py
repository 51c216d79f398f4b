"""Request and response bodies. Field names follow the service omnitok grew from (count-tokens:
token_count, model_id, strategy_used, is_exact, metadata.encoding; compress and validate
likewise); types are strict (a number is not a string), unknown fields are ignored.

The schema states every rule the server enforces on a body: ranges and enums per field (the
metrics are omnitok.options.METRICS, the methods omnitok.options.METHODS, the encodings and model
ids this server counts), and the rules between fields (`text` or `messages`; `system` and `tools`
only with messages, tools only for Claude; `texts` or `records`; `field` only with records; at
most one of `budget`, `ratio`, `target_compression`; `strict` only with a model counted exactly)
as JSON Schema `oneOf` / `not` / `if` clauses, the cross-field ones enforced by a validator of the
same model with a message naming the JSON fields. A null value is an absent field. What no schema
can state (a record without the key `field` names) is a documented 422 (routes.POST_ERRORS); a
model this server cannot count exactly under `strict`, a documented 503."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from ..options import METHODS, METRICS

DEFAULT_TARGET_COMPRESSION = 0.944  # the earlier service's default, when no budget form is given
MAX_BUDGET = 2**53  # the largest whole number every JSON reader holds exactly (written 5.0 or 5)

Metric = Literal[METRICS]  # type: ignore[valid-type]  # the names of omnitok.options.METRICS
Method = Literal[("auto", *METHODS)]  # type: ignore[valid-type]


def _given(name: str) -> dict:
    """JSON Schema: `name` is present and not null."""
    return {"required": [name], "properties": {name: {"not": {"type": "null"}}}}


def _absent(*names: str) -> dict:
    """JSON Schema: each of `names` is absent or null."""
    return {"properties": {name: {"type": "null"} for name in names}}


def _both(a: str, b: str) -> dict:
    return {"allOf": [_given(a), _given(b)]}


# A Hugging Face repo id (the catch-all family: counted with its tokenizer files, or estimated).
HUB_ID = r"^(?:hf:)?[A-Za-z0-9_][A-Za-z0-9_.-]{0,95}/[A-Za-z0-9_][A-Za-z0-9_.-]{0,95}$"
_CLAUDE_IDS = ("claude-sonnet-4-5", "claude-opus-4-1", "claude-haiku-4-5", "claude-3-5-sonnet-latest")


def _available_encodings() -> list[str]:
    """The OpenAI encodings whose vocabulary this server has (embedded, or in an asset store)."""
    from ..assets.store import tiktoken_candidates
    from ..tokenizers.openai_encodings import ENCODINGS

    return sorted(
        name
        for name, spec in ENCODINGS.items()
        if any(p.is_file() for p, _ in tiktoken_candidates(spec.file, spec.url))
    )


def _known_models() -> dict:
    """JSON Schema of a model id this server counts: the registry's ids (omnitok.families' names;
    an OpenAI id only where the server has its vocabulary, else 503), Claude's current ids, or a
    Hugging Face org/name; null for the server's default. Any other id: 422 unknown_model."""
    from ..families import families, resolve

    encodings = set(_available_encodings())
    known = [
        n
        for fam in families()
        for n in fam.names()
        if " " not in n and "*" not in n and (fam.name != "openai" or resolve(n).target in encodings)
    ]
    return {
        "anyOf": [
            {"type": "string", "enum": sorted(set(known) | set(_CLAUDE_IDS))},
            {"type": "string", "pattern": HUB_ID},
            {"type": "null"},
        ]
    }


_MODEL_NOTE = " An id omnitok does not know: 422 unknown_model (`omnitok models` lists them)."


def _model_ids(schema: dict) -> None:
    """model_id's own schema, where the id is always resolved (compress)."""
    schema.pop("anyOf", None)
    schema.update(_known_models())
    schema["description"] = schema.get("description", "Model id.") + _MODEL_NOTE


def _counted_model_rule() -> dict:
    """JSON Schema: the model id is resolved unless an encoding is given (then it is a label)."""
    return {"anyOf": [_given("encoding"), {"properties": {"model_id": _known_models()}}]}


def _validated_model_rule() -> dict:
    """JSON Schema: validate resolves the model id only to score the compression metric (named in
    `metrics`, or turned on by `max_ratio`)."""
    return {
        "if": {
            "anyOf": [
                {"required": ["metrics"], "properties": {"metrics": {"contains": {"const": "compression"}}}},
                _given("max_ratio"),
            ]
        },
        "then": {"properties": {"model_id": _known_models()}},
    }


def _exact_ids() -> list[str]:
    """The registry's ids this server counts exactly offline: OpenAI's, where it has the vocabulary."""
    from ..families import families, resolve

    encodings = set(_available_encodings())
    return sorted(
        {
            n
            for fam in families()
            if fam.name == "openai"
            for n in fam.names()
            if " " not in n and "*" not in n and resolve(n).target in encodings
        }
    )


def _strict_rule() -> dict:
    """JSON Schema: `strict: true` with an encoding, the server's default model, or a model this
    server counts exactly offline (any other: 503 exact_unavailable where no provider answers)."""
    return {
        "if": {"required": ["strict"], "properties": {"strict": {"const": True}}},
        "then": {
            "anyOf": [
                _given("encoding"),
                {"properties": {"model_id": {"anyOf": [{"type": "null"}, {"type": "string", "enum": _exact_ids()}]}}},
            ]
        },
    }


def _tool_rule() -> dict:
    """JSON Schema: tool definitions only with a model whose family counts them offline, named in
    the request: Claude's (OpenAI and Gemini publish no rule for them, and a Hugging Face model
    frames them only with its tokenizer files, which a schema cannot see: 422; null is the
    server's default model, an OpenAI one unless set otherwise)."""
    return {
        "if": {"required": ["tools"], "properties": {"tools": {"type": "array", "minItems": 1}}},
        "then": {
            "required": ["model_id"],
            "properties": {"encoding": {"type": "null"}, "model_id": {"type": "string", "enum": list(_CLAUDE_IDS)}},
        },
    }


def _encodings(schema: dict) -> None:
    """encoding's schema: the encodings this server has the vocabulary of (another known one
    answers 503 asset_unavailable, an unknown one 422)."""
    schema["anyOf"] = [{"type": "string", "enum": _available_encodings()}, {"type": "null"}]


def _refuse(message: str, code: str = "invalid_request"):
    """A request-validation error with `message` (its location is the body); its type is the
    error's code in the answer (omnitok.serve.errors.validation_message)."""
    return PydanticCustomError(code, message)


class _Body(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")


class _CountOptions(_Body):
    model_id: str | None = Field(
        None,
        description="Model id (gpt-4o, claude-sonnet-4-5, ...). Default: the server's.",
        json_schema_extra=_model_ids,
    )
    encoding: str | None = Field(
        None, description="Count with an encoding directly (o200k_base, cl100k_base).", json_schema_extra=_encodings
    )
    online: bool | None = Field(
        None,
        validation_alias=AliasChoices("online", "prefer_online"),
        description="Use the provider's count API where one exists (the server's credentials). Default: the server's.",
    )
    strict: bool | None = Field(None, description="Exact counts only: 503 where only an estimate is available.")


# A tool definition in either provider's shape (omnitok.tooldefs): a `name`, or a `function` with one.
_TOOL_SCHEMA = {
    "type": "object",
    "anyOf": [
        {"required": ["name"], "properties": {"name": {"type": "string"}}},
        {
            "required": ["function"],
            "properties": {
                "function": {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}}}
            },
        },
    ],
}


# A chat message every family counts offline: string fields, a content of text parts.
_TEXT_PART = {
    "type": "object",
    "required": ["type", "text"],
    "properties": {"type": {"const": "text"}, "text": {"type": "string"}},
}
_MESSAGE = {
    "type": "object",
    "properties": {
        "content": {"anyOf": [{"type": "string"}, {"type": "null"}, {"type": "array", "items": _TEXT_PART}]}
    },
    "additionalProperties": {"type": ["string", "null"]},
}

# A record a count can be made of without `field`: a string, or an object with a text or messages.
_RECORD = {
    "anyOf": [
        {"type": "string"},
        {"type": "object", "required": ["text"], "properties": {"text": {"type": "string"}}},
        {
            "type": "object",
            "required": ["messages"],
            "properties": {"messages": {"anyOf": [{"type": "string"}, {"type": "array", "items": _MESSAGE}]}},
        },
    ]
}


def _tool_named(tool: dict) -> bool:
    fn = tool.get("function") if isinstance(tool.get("function"), dict) else tool
    return isinstance(fn.get("name"), str)


class CountRequest(_CountOptions):
    """Exactly one of `text` and `messages`; `system` and `tools` only with `messages`."""

    model_config = ConfigDict(
        json_schema_extra=lambda schema: schema.update(
            oneOf=[
                {"allOf": [_given("text"), _absent("messages", "system", "tools")]},
                {"allOf": [_given("messages"), _absent("text")]},
            ],
            allOf=[_counted_model_rule(), _strict_rule(), _tool_rule()],
        )
    )

    text: str | None = Field(None, description="The text to count.")
    messages: list[dict[str, Any]] | None = Field(
        None,
        description="A chat `messages` array, instead of text: each message's fields are strings (role, "
        "content, name, ...), and a content may be a list of text parts. Other parts (images, audio) "
        "cannot be counted offline: 422.",
        json_schema_extra={"anyOf": [{"type": "array", "items": _MESSAGE}, {"type": "null"}]},
    )
    system: str | list[dict[str, Any]] | None = Field(
        None,
        description="With messages: the request's system prompt (a string, or text parts).",
        json_schema_extra={"anyOf": [{"type": "string"}, {"type": "array", "items": _TEXT_PART}, {"type": "null"}]},
    )
    tools: list[dict[str, Any]] | None = Field(
        None,
        description="With messages: tool definitions, each with a `name` (Anthropic's shape) or a `function` "
        "with one (OpenAI's). Models with no published rule for them offline (OpenAI's) answer 422.",
        json_schema_extra={"anyOf": [{"type": "array", "items": _TOOL_SCHEMA}, {"type": "null"}]},
    )

    @model_validator(mode="after")
    def _one_form(self):
        if (self.text is None) == (self.messages is None):
            raise _refuse("give either text or messages")
        if self.text is not None and (self.system is not None or self.tools is not None):
            raise _refuse("system and tools go with messages, not text")
        for i, tool in enumerate(self.tools or ()):
            if not _tool_named(tool):
                raise _refuse(f"tools[{i}]: a tool definition has no 'name' (nor a 'function' with one)")
        return self


class CountResponse(BaseModel):
    token_count: int
    model_id: str
    strategy_used: str
    is_exact: bool
    metadata: dict[str, Any]


# A field value names at least one field: something besides commas and white space (records.fields_given).
_NAMES = r"[^,\s]"


class BatchRequest(_CountOptions):
    """Exactly one of `texts` and `records`; `field` only with `records`."""

    model_config = ConfigDict(
        json_schema_extra=lambda schema: schema.update(
            oneOf=[
                {"allOf": [_given("texts"), _absent("records", "field")]},
                {"allOf": [_given("records"), _absent("texts")]},
            ],
            allOf=[
                # Without `field`, and stopping at a bad record, each object holds a text or messages.
                {
                    "if": {"allOf": [_absent("field"), {"properties": {"on_error": {"const": "stop"}}}]},
                    "then": {
                        "properties": {"records": {"anyOf": [{"type": "null"}, {"type": "array", "items": _RECORD}]}}
                    },
                },
                _counted_model_rule(),
                _strict_rule(),
            ],
        )
    )

    texts: list[str] | None = Field(None, description="Texts, one result row each.")
    records: list[Any] | None = Field(
        None,
        description="Records as JSONL lines hold them: objects with text or messages (or `field`), or strings. "
        "With on_error stop (the default), a record no count can be made of is a 422 naming it.",
        json_schema_extra={"anyOf": [{"type": "array", "items": {"type": ["object", "string"]}}, {"type": "null"}]},
    )
    field: str | list[str] | None = Field(
        None,
        description="What to count in each record: a (dotted) field or fields, each once; a string holds one "
        "or more names separated by commas, as `omnitok count -f` takes them.",
        json_schema_extra={
            "anyOf": [
                {"type": "string", "pattern": _NAMES},
                {"type": "array", "items": {"type": "string", "pattern": _NAMES}, "uniqueItems": True},
                {"type": "null"},
            ]
        },
    )
    id_field: str | None = Field("id", description="Copied to the row as `id` when present.")
    on_error: Literal["stop", "skip", "record"] = Field(
        "stop", description="A bad record: stop (422 naming it), skip (no row), record (an error row)."
    )

    @model_validator(mode="after")
    def _one_form(self):
        if (self.texts is None) == (self.records is None):
            raise _refuse("give either texts or records")
        if self.texts is not None and self.field is not None:
            raise _refuse("field applies to records, not texts")
        return self


class BatchResponse(BaseModel):
    results: list[dict[str, Any]] = Field(description="Rows as `omnitok count --format jsonl` writes them.")
    summary: dict[str, Any] = Field(description="As `omnitok count --summary` gives it.")


class CompressRequest(_Body):
    """At most one of `budget`, `ratio` and `target_compression` (none: target_compression
    DEFAULT_TARGET_COMPRESSION)."""

    model_config = ConfigDict(
        json_schema_extra={
            "not": {
                "anyOf": [
                    _both("budget", "ratio"),
                    _both("budget", "target_compression"),
                    _both("ratio", "target_compression"),
                ]
            }
        }
    )

    context: str | list[str] | list[dict[str, Any]] = Field(
        description="The text, or its passages: strings, or objects with a `text` string.",
        json_schema_extra={
            "anyOf": [
                {"type": "string"},
                {"type": "array", "items": {"type": "string"}},
                {
                    "type": "array",
                    "items": {"type": "object", "required": ["text"], "properties": {"text": {"type": "string"}}},
                },
            ]
        },
    )
    query: str | None = None
    model_id: str | None = Field(None, description="Model id. Default: the server's.", json_schema_extra=_model_ids)
    target_compression: float | None = Field(
        None,
        ge=0,
        le=1,
        allow_inf_nan=False,
        description=f"Share of tokens to remove (default {DEFAULT_TARGET_COMPRESSION} if no budget).",
    )
    budget: int | None = Field(None, ge=0, le=MAX_BUDGET, description="Tokens to keep, at most.")
    ratio: float | None = Field(None, ge=0, le=1, allow_inf_nan=False, description="Share of tokens to keep.")
    method: Method | None = None
    gap_marker: str | None = None

    @field_validator("budget", mode="before")
    @classmethod
    def _whole(cls, value):
        """A whole number written with a fraction (5.0) is an integer, as JSON Schema has it."""
        if type(value) is float and value.is_integer():
            return int(value)
        return value

    @model_validator(mode="after")
    def _one_budget(self):
        given = [name for name in ("budget", "ratio", "target_compression") if getattr(self, name) is not None]
        if len(given) > 1:
            raise _refuse(
                f"give at most one of budget, ratio and target_compression (not {' and '.join(given)})", "invalid_input"
            )
        return self


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
    """`model_id` counts tokens for the compression metric (and `max_ratio`'s gate)."""

    model_config = ConfigDict(json_schema_extra=lambda schema: schema.update(allOf=[_validated_model_rule()]))

    original: str
    compressed: str
    metrics: list[Metric] = Field(["rouge-l"], description=f"Any of {', '.join(METRICS)}.")
    model_id: str | None = Field(None, description="For the compression metric." + _MODEL_NOTE)
    min_rouge_l: float | None = Field(None, ge=0, le=1, allow_inf_nan=False, description="Gate: ROUGE-L F1 at least.")
    max_ratio: float | None = Field(
        None, ge=0, allow_inf_nan=False, description="Gate: compressed/original tokens at most."
    )
    min_bertscore: float | None = Field(
        None, ge=-1, le=1, allow_inf_nan=False, description="Gate: BERTScore F1 at least."
    )
    min_bleu: float | None = Field(
        None, ge=0, le=1, allow_inf_nan=False, description="Gate: BLEU at least (sacrebleu's sentence score / 100)."
    )
    min_chrf: float | None = Field(
        None, ge=0, le=1, allow_inf_nan=False, description="Gate: chrF at least (sacrebleu's sentence score / 100)."
    )
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
