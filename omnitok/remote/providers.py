"""The providers' token-count APIs, in their real wire formats (../shared/reference/provider-apis.md).

Each provider counts one item: a text, or a ChatRequest holding a whole `messages` array.
Credentials and base URLs come from the environment variables each provider's own SDK reads.
"""

from __future__ import annotations

import contextvars
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass

from ..redact import redact_url, url_secrets
from . import budget, claude_text
from .http import HttpPolicy, count_field, describe, path_segment, plausible, post_json

# Versions of a provider's counting rule beyond what the API answers, carried by its fingerprint
# (so cache keys change with them): Claude texts are counted by claude_text's measured framing.
RULES = {"anthropic-api": f"text-rule{claude_text.RULE}", "bedrock-api": f"text-rule{claude_text.RULE}"}


@dataclass(frozen=True)
class ChatRequest:
    """A chat record passed whole to an online count API."""

    messages: tuple
    tools: tuple = ()

    def __len__(self) -> int:  # batching weighs items by size
        return sum(len(str(m)) for m in self.messages) + sum(len(str(t)) for t in self.tools)


def _anthropic_tools(tools) -> list[dict]:
    from ..tooldefs import tool_spec

    out = []
    for tool in tools:
        if "input_schema" in tool or "type" in tool and tool.get("type") != "function":
            out.append(tool)  # Anthropic's shape, or one of its server tools: as given
        else:
            name, description, schema = tool_spec(tool)
            out.append({"name": name, "description": description, "input_schema": schema})
    return out


def _split_system(messages: Sequence[dict]) -> tuple[str | None, list[dict]]:
    system = [m.get("content") for m in messages if m.get("role") == "system"]
    rest = [m for m in messages if m.get("role") != "system"]
    texts = [s if isinstance(s, str) else "".join(b.get("text", "") for b in s or []) for s in system]
    return ("\n\n".join(texts) if texts else None), rest


class Provider:
    name = "provider"
    secrets: tuple[str, ...] = ()

    def __init__(self, model: str, policy: HttpPolicy | None = None):
        self.model = model
        self.policy = policy or HttpPolicy()

    @classmethod
    def available(cls) -> str | None:
        """None if credentials/endpoint are configured, else what is missing."""
        return None

    def count_one(self, item) -> int:
        raise NotImplementedError

    def _post(self, url: str, body: dict, headers: dict, sign=None) -> dict:
        return post_json(self.name, url, body, headers, self.policy, self.secrets, sign)

    def _hidden(self) -> tuple[str, ...]:
        """What no message may show: the credentials, and any userinfo in the URL."""
        return (*self.secrets, *url_secrets(self.url))

    def _count(self, data, key: str) -> int:
        """The count under `key` of an answer, checked (see http.count_field)."""
        return count_field(self.name, data, key, self._hidden())


class Anthropic(Provider):
    name = "anthropic"
    strategy = "anthropic-api"

    @classmethod
    def available(cls) -> str | None:
        return None if os.environ.get("ANTHROPIC_API_KEY") else "ANTHROPIC_API_KEY is not set"

    def __init__(self, model, policy=None):
        super().__init__(model, policy)
        self.key = os.environ.get("ANTHROPIC_API_KEY", "")
        self.secrets = (self.key,)
        self.url = os.environ.get("ANTHROPIC_BASE_URL", "https://api.anthropic.com").rstrip("/")
        self.url += "/v1/messages/count_tokens"
        self.texts = claude_text.ClaudeText(
            self.name, model, fingerprint(self.strategy, model), self.url, self._count_message
        )

    def _headers(self) -> dict:
        return {"x-api-key": self.key, "anthropic-version": "2023-06-01"}

    def _count_message(self, content: str) -> int:
        """input_tokens of a request holding one user message."""
        body = {"model": self.model, "messages": [{"role": "user", "content": content}]}
        return self._count(self._post(self.url, body, self._headers()), "input_tokens")

    def count_one(self, item) -> int:
        """A chat: the API's answer for the whole request. A text: its own tokens, the message
        framing measured and taken away (claude_text)."""
        if isinstance(item, ChatRequest):
            system, messages = _split_system(item.messages)
            body = {"model": self.model, "messages": messages}
            if system is not None:
                body["system"] = system
            if item.tools:
                body["tools"] = _anthropic_tools(item.tools)
            return self._count(self._post(self.url, body, self._headers()), "input_tokens")
        return self.texts.count(item)


class Gemini(Provider):
    name = "gemini"
    strategy = "gemini-api"

    @classmethod
    def available(cls) -> str | None:
        return None if _gemini_key() else "GOOGLE_API_KEY (or GEMINI_API_KEY) is not set"

    def __init__(self, model, policy=None):
        super().__init__(model, policy)
        self.key = _gemini_key()
        self.secrets = (self.key,)
        base = os.environ.get("GOOGLE_GEMINI_BASE_URL", "https://generativelanguage.googleapis.com").rstrip("/")
        name = model.removeprefix("models/")
        self.url = f"{base}/v1beta/models/{path_segment(name)}:countTokens"
        self.model_path = f"models/{name}"

    def count_one(self, item) -> int:
        headers = {"x-goog-api-key": self.key}
        if isinstance(item, ChatRequest):
            system, messages = _split_system(item.messages)
            contents = [
                {"role": "model" if m.get("role") == "assistant" else "user", "parts": _parts(m.get("content"))}
                for m in messages
            ]
            req = {"model": self.model_path, "contents": contents}
            if system is not None:
                req["systemInstruction"] = {"parts": [{"text": system}]}
            if item.tools:
                from ..tooldefs import tool_spec

                decls = [
                    dict(zip(("name", "description", "parameters"), tool_spec(t), strict=True)) for t in item.tools
                ]
                req["tools"] = [{"functionDeclarations": decls}]
            body = {"generateContentRequest": req}
        else:
            body = {"contents": [{"role": "user", "parts": [{"text": item}]}]}
        return self._count(self._post(self.url, body, headers), "totalTokens")


class VLLM(Provider):
    """vLLM's OpenAI-compatible server: POST /tokenize at the server root."""

    name = "vllm"
    strategy = "vllm-api"

    @classmethod
    def available(cls) -> str | None:
        return None if os.environ.get("VLLM_ENDPOINT") else "VLLM_ENDPOINT is not set"

    def __init__(self, model, policy=None, special_tokens: bool = True):
        super().__init__(model, policy)
        self.key = os.environ.get("VLLM_API_KEY", "")
        self.secrets = (self.key,)
        base = os.environ.get("VLLM_ENDPOINT", "").rstrip("/")
        self.url = base.removesuffix("/v1") + "/tokenize"
        self.special_tokens = special_tokens

    def count_one(self, item) -> int:
        headers = {"authorization": f"Bearer {self.key}"} if self.key else {}
        if isinstance(item, ChatRequest):
            body = {
                "model": self.model,
                "messages": list(item.messages),
                "add_generation_prompt": True,
                "add_special_tokens": False,
            }
            if item.tools:
                body["tools"] = list(item.tools)
        else:
            body = {"model": self.model, "prompt": item, "add_special_tokens": self.special_tokens}
        return self._count(self._post(self.url, body, headers), "count")


class SelfHosted(Provider):
    """Another self-hosted server's tokenize endpoint: OMNITOK_TOKENIZE_URL, with
    OMNITOK_TOKENIZE_KIND = tgi (text-generation-inference: POST /tokenize {"inputs"} -> [tokens])
    or llamacpp (llama.cpp server: POST /tokenize {"content", "add_special"} -> {"tokens"})."""

    name = "self-hosted"
    strategy = "self-hosted-api"
    KINDS = ("tgi", "llamacpp")

    @classmethod
    def available(cls) -> str | None:
        if not os.environ.get("OMNITOK_TOKENIZE_URL"):
            return "neither VLLM_ENDPOINT nor OMNITOK_TOKENIZE_URL is set"
        kind = os.environ.get("OMNITOK_TOKENIZE_KIND", "tgi")
        return None if kind in cls.KINDS else f"OMNITOK_TOKENIZE_KIND must be one of {', '.join(cls.KINDS)}"

    def __init__(self, model, policy=None, special_tokens: bool = True):
        super().__init__(model, policy)
        self.kind = os.environ.get("OMNITOK_TOKENIZE_KIND", "tgi")
        self.key = os.environ.get("OMNITOK_TOKENIZE_API_KEY", "")
        self.secrets = (self.key,)
        base = os.environ.get("OMNITOK_TOKENIZE_URL", "").rstrip("/")
        self.url = base if base.endswith("/tokenize") else base + "/tokenize"
        self.special_tokens = special_tokens

    def count_one(self, item) -> int:
        from ..errors import RemoteError

        if isinstance(item, ChatRequest):
            raise RemoteError(self.name, f"a {self.kind} tokenize endpoint cannot frame chats")
        headers = {"authorization": f"Bearer {self.key}"} if self.key else {}
        if self.kind == "tgi":
            data = self._post(self.url, {"inputs": item, "add_special_tokens": self.special_tokens}, headers)
            if not isinstance(data, list):
                raise RemoteError(self.name, f"expected a list of tokens, got {describe(data, self._hidden())}")
            return len(data)
        data = self._post(self.url, {"content": item, "add_special": self.special_tokens}, headers)
        tokens = data.get("tokens") if isinstance(data, dict) else None
        if not isinstance(tokens, list):
            raise RemoteError(self.name, f"the answer has no 'tokens' list (got {describe(data, self._hidden())})")
        return len(tokens)


class Bedrock(Provider):
    """AWS Bedrock Runtime CountTokens (Claude models), signed with SigV4 through botocore."""

    name = "bedrock"
    strategy = "bedrock-api"

    @classmethod
    def available(cls) -> str | None:
        try:
            import botocore.session
        except ImportError:
            return "botocore is not installed (pip install 'omnitok[bedrock]')"
        if botocore.session.get_session().get_credentials() is None:
            return "no AWS credentials (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY)"
        return None

    def __init__(self, model, policy=None):
        super().__init__(model, policy)
        import botocore.session

        session = botocore.session.get_session()
        self.region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
        self.credentials = session.get_credentials()
        frozen = self.credentials.get_frozen_credentials()
        self.secrets = tuple(s for s in (frozen.secret_key, frozen.token, frozen.access_key) if s)
        base = (
            os.environ.get("AWS_ENDPOINT_URL_BEDROCK_RUNTIME") or f"https://bedrock-runtime.{self.region}.amazonaws.com"
        )
        # modelId is one URI label, encoded as botocore encodes it (`v2:0` -> `v2%3A0`); the SigV4
        # canonical path is then made from the path as sent, so the signature holds
        self.url = f"{base.rstrip('/')}/model/{path_segment(_bedrock_base_id(model))}/count-tokens"
        self.texts = claude_text.ClaudeText(
            self.name, model, fingerprint(self.strategy, model), self.url, self._count_message
        )

    def _count_message(self, content: str) -> int:
        """inputTokens of a Converse request holding one user message."""
        body = {"input": {"converse": {"messages": [{"role": "user", "content": [{"text": content}]}]}}}
        return self._count(self._post(self.url, body, {}, self._sign), "inputTokens")

    def _sign(self, method, url, headers, data):
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest

        req = AWSRequest(method=method, url=url, data=data, headers=headers)
        SigV4Auth(self.credentials, "bedrock", self.region).add_auth(req)
        return dict(req.headers.items())

    def count_one(self, item) -> int:
        if isinstance(item, ChatRequest):
            system, messages = _split_system(item.messages)
            converse = {
                "messages": [{"role": m.get("role", "user"), "content": _blocks(m.get("content"))} for m in messages]
            }
            if system is not None:
                converse["system"] = [{"text": system}]
            if item.tools:
                from ..tooldefs import tool_spec

                specs = [tool_spec(t) for t in item.tools]
                converse["toolConfig"] = {
                    "tools": [
                        {"toolSpec": {"name": n, "description": d, "inputSchema": {"json": j}}} for n, d, j in specs
                    ]
                }
            body = {"input": {"converse": converse}}
            return self._count(self._post(self.url, body, {}, self._sign), "inputTokens")
        return self.texts.count(item)


def _bedrock_base_id(model: str) -> str:
    """Bedrock counts need the bare foundation-model id: no cross-region prefix."""
    for region in ("us.", "eu.", "apac.", "global.", "us-gov.", "jp.", "au."):
        if model.startswith(region):
            return model[len(region) :]
    return model


def _gemini_key() -> str:
    return os.environ.get("GOOGLE_API_KEY") or os.environ.get("GEMINI_API_KEY") or ""


def _parts(content) -> list[dict]:
    if isinstance(content, str):
        return [{"text": content}]
    return [{"text": b.get("text", "")} for b in content or [] if isinstance(b, dict)]


def _blocks(content) -> list[dict]:
    return _parts(content)


def fingerprint(strategy: str, model: str) -> str:
    """An online strategy's fingerprint: the provider's strategy name, the model it is sent, and
    the version of omnitok's own rule on top of the API's answer where there is one (RULES)."""
    rule = RULES.get(strategy)
    return f"{strategy}:{model}:{rule}" if rule else f"{strategy}:{model}"


def _in_flight(call, items: Sequence, concurrency: int) -> list:
    """`call(item)` for each item, in order, on at most `concurrency` threads, each in a copy of
    the caller's context (the request's budget of provider calls goes with it). The first failure
    (or a Ctrl-C here) stops the rest: items not yet sent are not sent. The calls already in
    flight end on their own, bounded by the provider's timeout, on daemon threads that the
    caller does not wait for: neither a fallback to the offline count nor the process's exit
    waits on answers no one will read (a pool's threads, joined at exit, kept an `omnitok count`
    that had fallen back or been interrupted up to the provider's timeout). Except in a server
    (omnitok.remote.budget bounds set): there a request waits for the calls it started, so that
    the threads working for requests stay bounded by the requests running."""
    contexts = [contextvars.copy_context() for _ in items]
    results: list = [None] * len(items)
    failures: list[BaseException] = []  # in the order they happened
    lock = threading.Lock()
    finished = threading.Event()
    state = {"next": 0, "left": len(items)}

    def worker():
        while True:
            with lock:
                i = state["next"]
                if failures or i >= len(items):
                    return
                state["next"] = i + 1
            try:
                results[i] = contexts[i].run(call, items[i])
            except BaseException as e:  # noqa: BLE001 - handed to the caller, which raises it
                with lock:
                    failures.append(e)
                finished.set()
                return
            with lock:
                state["left"] -= 1
                if not state["left"]:
                    finished.set()

    n = min(concurrency, len(items))
    threads = [threading.Thread(target=worker, name="omnitok-upstream", daemon=True) for _ in range(n)]
    for t in threads:
        t.start()
    try:
        finished.wait()
    except BaseException:
        with lock:  # a Ctrl-C: nothing more is sent
            failures.append(KeyboardInterrupt())
        raise
    if failures:
        if budget.limits() != (None, None):
            for t in threads:
                t.join()
        raise failures[0]
    return results


class RemoteStrategy:
    """Exact counts from a provider's API, several requests in flight at once."""

    exact = True
    in_process = True  # I/O bound: threads here, never forked workers
    cache_policy = "all"  # tens of ms a request: always worth a cache lookup

    def __init__(self, provider: Provider, concurrency: int = 8):
        self.provider = provider
        self.name = provider.strategy
        self.encoding = f"{provider.name}:{provider.model}"
        self.engine = provider.name
        self.source = redact_url(provider.url)  # shown by --explain and `omnitok models`
        self.fingerprint = fingerprint(provider.strategy, provider.model)
        self.concurrency = concurrency

    def count(self, item) -> int:
        return self.count_batch([item])[0]

    def count_one(self, item) -> int:
        """The provider's count for one item, refused where no tokenizer could give it (plausible)."""
        return plausible(self.provider.name, item, self.provider.count_one(item))

    def count_batch(self, items: Sequence) -> list[int]:
        """Counts in order, `concurrency` requests in flight; the first failure stops the rest
        (items not yet sent are not sent). A batch that cannot fit in the request's budget of
        provider calls (omnitok.remote.budget) is refused before any call: each item but an
        empty text costs one at least."""
        budget.need(sum(1 for item in items if item != ""))
        if len(items) <= 1 or self.concurrency <= 1:
            return [self.count_one(item) for item in items]
        return _in_flight(self.count_one, items, self.concurrency)
