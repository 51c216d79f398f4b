"""The Claude family: ids (Anthropic, Bedrock and Vertex naming) -> a calibration generation; exact
counts online (Anthropic count_tokens, Bedrock CountTokens); offline, a calibrated estimate, never
presented as exact; chats framed as count_tokens counts them.

No client-side tokenizer exists for Claude 3 and later (Anthropic, anthropic-sdk-python #375);
exact counts come only from the count_tokens API. Offline, omnitok counts with o200k_base (whose
splits match Claude 3's on the published sample) and scales by content type, from these public
calibration points (see ../shared/reference/provider-apis.md and the README):

- Claude 3.5 Sonnet vs GPT-4o on the same inputs (VentureBeat): +16% English prose, +21% math,
  +30% Python code.
- One input: 429 o200k tokens, 506 for Claude before Opus 4.7 (x1.18), 656 for Opus 4.7 (x1.53,
  i.e. x1.30 over earlier Claude; Anthropic states 1.0-1.35x of Opus 4.6) (sammcj/ingest #65).
- Claude 3, "Security by obscurity is not a good idea." = 10 text tokens, the o200k split, and a
  single user message costs its text + 3; claude-sonnet-4-5 count_tokens for system "You are a
  scientist" + user "Hello, Claude" = 14 (Anthropic docs): 3 tokens per message, system included.
- The legacy tokenizer (claude-2 and earlier, anthropic==0.38.0's tokenizer.json) counts within
  ~3% of cl100k_base.

`error_band` is the largest relative distance between these published counts and omnitok's
estimate for them, relative to the true count (claude-3: the 10-token sentence is estimated at 12,
+20%; claude-4.7: Anthropic's 1.0-1.35x range around the x1.30 used, up to +30%; claude-2: ~3%,
kept at 5%), not a measurement against the API: none is possible offline. Non-Latin scripts use
the code ratio (published comparisons say "higher", without figures).

A calibration (`omnitok calibrate`, omnitok.calibration) measured on the user's own texts against
the provider's count API replaces this estimate for its model: `CalibratedClaude` counts with its
fitted weights, its `error_band` is the p95 relative error it measured on held-out texts (a 90%
upper bound of it), and its rows name it (`encoding` "calibration:<id>").
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence

from ..errors import UsageError
from .base import BEDROCK_REGIONS, BundleFiles, Family, Resolution, content_type, message_texts

CALIBRATION_VERSION = 1

# generation -> (base encoding, {content type: ratio to the base count}, error band)
GENERATIONS: dict[str, tuple[str, dict[str, float], float]] = {
    "claude-2": ("cl100k_base", {"prose": 1.0, "math": 1.0, "code": 1.0, "nonlatin": 1.0}, 0.05),
    "claude-3": ("o200k_base", {"prose": 1.16, "math": 1.21, "code": 1.30, "nonlatin": 1.30}, 0.20),
    "claude-4.7": (
        "o200k_base",
        {"prose": 1.16 * 1.30, "math": 1.21 * 1.30, "code": 1.30 * 1.30, "nonlatin": 1.30 * 1.30},
        0.30,
    ),
}

_OLD = re.compile(r"^claude-(\d+)(?:[-.](\d))?-(?:haiku|sonnet|opus)")  # claude-3-5-sonnet-...
_NEW = re.compile(r"^claude-(?:haiku|sonnet|opus)-(\d+)(?:[-.](\d))?(?:\D|$)")  # claude-sonnet-4-5
_PREFIXES = ("anthropic/", "bedrock/", "vertex_ai/")


def generation(model: str) -> str | None:
    """The calibration generation of a Claude id (Anthropic, Bedrock or Vertex naming), else None."""
    name = model.lower()
    for prefix in _PREFIXES:
        name = name.removeprefix(prefix)
    for region in BEDROCK_REGIONS:
        if name.startswith(region + "anthropic."):
            name = name[len(region) :]
            break
    name = name.removeprefix("anthropic.")
    if not name.startswith("claude"):
        return None
    if name.startswith(("claude-2", "claude-instant", "claude-v1", "claude-v2")):
        return "claude-2"
    m = _OLD.match(name) or _NEW.match(name)
    if m is None:
        return "claude-4.7" if name.startswith(("claude-opus", "claude-sonnet", "claude-haiku")) else None
    major, minor = int(m.group(1)), int(m.group(2) or 0)
    return "claude-4.7" if (major, minor) >= (4, 7) else "claude-3"


class ClaudeEstimate:
    """Estimated Claude token counts: a base encoding's count times a per-content-type ratio."""

    name = "claude-calibrated"
    exact = False

    def __init__(self, gen: str, engine: str = "auto"):
        from ..tokenizers import load_strategy

        base, ratios, band = GENERATIONS[gen]
        self.generation = gen
        self.encoding = f"{gen}~{base}"
        self.error_band = band
        self._ratios = ratios
        self._base = load_strategy(base, engine)
        self.engine = self._base.engine
        self.source = f"calibration v{CALIBRATION_VERSION} over {self._base.source}"
        self.fingerprint = f"claude-est:{gen}:v{CALIBRATION_VERSION}:{self._base.fingerprint}"

    def count(self, text: str) -> int:
        return self.count_batch([text])[0]

    def count_batch(self, texts: Sequence[str]) -> list[int]:
        counts = self._base.count_batch(texts)
        ratios = self._ratios
        return [round(n * ratios[content_type(t)]) for n, t in zip(counts, texts, strict=True)]


class CalibratedClaude:
    """Estimated Claude token counts from a calibration measured on the user's own texts
    (omnitok.calibration): never exact; its band is what it measured against the provider."""

    name = "claude-calibrated"
    exact = False

    def __init__(self, cal, engine: str = "auto"):
        from .. import calibration

        self.calibration = cal.id
        self.error_band = cal.error_band
        self.encoding = f"calibration:{cal.id}"
        self._model = cal.estimator
        self._features = calibration.Featurizer(engine)
        self.engine = self._features.engine
        self.source = f"calibration {cal.id} ({cal.data['provider']}, {cal.data['sample']['texts']} texts)"
        self.fingerprint = f"claude-cal:{cal.id}:{self._features.fingerprint}"

    def count(self, text: str) -> int:
        return self.count_batch([text])[0]

    def count_batch(self, texts: Sequence[str]) -> list[int]:
        x, ids, owner, _ = self._features.features(texts)
        return [n if t else 0 for n, t in zip(self._model.estimate(x, ids, owner), texts, strict=True)]


@functools.lru_cache(maxsize=8)
def _calibrated(cal_id: str, engine: str) -> CalibratedClaude:
    from .. import calibration

    return CalibratedClaude(calibration.load(cal_id), engine)


# Tools: a request with tools gets a fixed tool-use system prompt plus its definitions. Anthropic's
# documented example (claude-sonnet-4-5): system "You are a scientist" + "Hello, Claude" = 14,
# the same plus one get_weather(location) tool = 403. The definitions are estimated as their
# compact JSON (61 for that tool), so the fixed part is 403 - 14 - 61 = 328 Claude-3-generation
# tokens, scaled by the generation's prose ratio. One calibration point: the error band applies.
TOOL_PROMPT = 328


class ClaudeFraming:
    """Chats as Anthropic's count_tokens reports them: the text of each message (and of a system
    message) plus 3 tokens a message, plus the tool-use prompt and each tool's definition when the
    request has tools. Roles are not text. Image and document blocks cannot be estimated offline
    and are an error."""

    PER_MESSAGE = 3

    def __init__(self, generation: str = "claude-3"):
        ratios = GENERATIONS[generation][1]
        self.tool_prompt = round(TOOL_PROMPT * ratios["prose"] / GENERATIONS["claude-3"][1]["prose"])

    def text(self, text: str) -> tuple[list[str], int]:
        return [text], 0

    def chat(self, messages: list, where: str = "messages", tools: list | None = None) -> tuple[list[str], int]:
        import json

        from ..tooldefs import tool_spec

        texts = message_texts(messages, where, "block")
        overhead = self.PER_MESSAGE * len(messages)
        if tools:
            for i, tool in enumerate(tools):
                tool_spec(tool, f"tools[{i}]")
                texts.append(json.dumps(tool, ensure_ascii=False, separators=(",", ":")))
            overhead += self.tool_prompt
        return texts, overhead


@functools.lru_cache(maxsize=8)
def _estimate(gen: str, engine: str) -> ClaudeEstimate:
    return ClaudeEstimate(gen, engine)


class ClaudeFamily(Family):
    name = "claude"
    order = 20
    chain = (
        "online exact (Anthropic count_tokens, Bedrock CountTokens) -> an installed calibration (omnitok calibrate) "
        "-> calibrated estimate (o200k scaled)"
    )

    def resolve(self, model):
        gen = generation(model.strip())
        if gen is None:
            return None
        return Resolution(model, "claude", gen, "claude", f"Claude id: calibrated estimate ({gen})")

    def offline(self, res, opts):
        if opts.tokenizer:
            raise UsageError(f"--tokenizer applies to Hugging Face models, not to {res.model!r} ({res.family})")
        from ..calibration import for_model

        cal = for_model(res.model)
        if cal is not None:  # measured on the user's texts: it replaces the built-in ratios
            return _calibrated(cal.id, opts.engine)
        return _estimate(res.target, opts.engine)

    def framing(self, res, strategy, opts):
        return ClaudeFraming(res.target if res.target in GENERATIONS else "claude-3")

    def bundle_files(self, res):  # the offline estimate's local vocabulary
        return (BundleFiles("tiktoken", GENERATIONS[res.target][0]),)

    def provider(self, res):
        from ..remote import providers

        return providers.Bedrock if "anthropic." in res.model else providers.Anthropic

    def provider_model(self, res):
        """The id as given, without a litellm-style `anthropic/`."""
        return res.model.removeprefix("anthropic/")

    def rows(self):
        pats = {
            "claude-2": "claude-2*, claude-instant*",
            "claude-3": "claude-3*, claude-*-4 .. 4-6",
            "claude-4.7": "claude-*-4-7 and later",
        }
        return [
            {"model": pats[g], "kind": "pattern", "target": g, "error_band": band}
            for g, (_, _, band) in GENERATIONS.items()
        ]
