"""What one app of `omnitok serve` owns (app.state.service): its config, its runtime (a thread
pool and the Counters and Compressors it lends: omnitok.runtime), its CPU worker processes
(omnitok.serve.workers), its Prometheus metrics and /stats totals, its readiness. The routes
(omnitok.serve.routes) and the fast path (omnitok.serve.fast) reach it through the app, so two
apps in one process share nothing of it."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import importlib
import threading
from typing import Any

from ..errors import OmnitokError
from ..runtime import INLINE_MAX_CHARS, Runtime, key
from . import workers
from .config import ServeConfig
from .errors import ServeError
from .metrics import Metrics

PROBE_TEXT = "Hello, world!"
PLANS_KEPT = 1024  # request options whose (model, options, pool key) are kept made (a client picks them)


class Totals:
    """The compression and counting totals behind /stats."""

    def __init__(self):
        self._lock = threading.Lock()
        self.compressions = 0
        self.original_tokens = 0
        self.compressed_tokens = 0
        self.ratio_sum = 0.0
        self.quality_sum = 0.0
        self.count_requests = 0
        self.tokens_counted = 0
        self.before_read: list = []  # called before view() reads (omnitok.serve.fast hands its counts)

    def compressed(self, r) -> None:
        with self._lock:
            self.compressions += 1
            self.original_tokens += r.original_tokens
            self.compressed_tokens += r.compressed_tokens
            self.ratio_sum += r.compression_ratio
            self.quality_sum += r.quality_score

    def counted(self, tokens: int) -> None:
        self.counted_many(1, tokens)

    def counted_many(self, requests: int, tokens: int) -> None:
        with self._lock:
            self.count_requests += requests
            self.tokens_counted += tokens

    def view(self) -> dict:
        for flush in self.before_read:
            flush()
        with self._lock:
            n = self.compressions
            saved = self.original_tokens - self.compressed_tokens
            return {
                "total_compressions": n,
                "total_original_tokens": self.original_tokens,
                "total_compressed_tokens": self.compressed_tokens,
                "total_tokens_saved": saved,
                "avg_compression_ratio": self.ratio_sum / n if n else 0.0,
                "avg_quality_score": self.quality_sum / n if n else 0.0,
                "overall_compression_ratio": self.compressed_tokens / self.original_tokens
                if self.original_tokens
                else 0.0,
                "count_requests": self.count_requests,
                "tokens_counted": self.tokens_counted,
            }


class Service:
    """See the module's docstring. start() and stop() are the app's lifespan."""

    def __init__(self, config: ServeConfig, *, freeze_gc: bool = False):
        self.config = config
        self.freeze_gc = freeze_gc
        self.runtime = Runtime(config.threads)
        self.metrics = Metrics()
        self.metrics.keep_model(config.model)  # the default model is a label of its own in /metrics
        self.totals = Totals()
        self.cpu = workers.CpuPool(
            config.cpu_workers or workers.default_size(config.workers),
            init=(workers.limit_upstream, (config.max_upstream_per_request, config.max_upstream_concurrency)),
        )
        self.ready = False
        self.not_ready = "loading the default model's tokenizer"
        self.ready_info: dict = {}
        self._warm: asyncio.Task | None = None
        self._plans: dict[tuple, tuple] = {}

    # --- lifespan ---

    async def start(self) -> None:
        self.cpu.start()
        self._warm = asyncio.create_task(self.warm_up())

    async def stop(self) -> None:
        if self._warm is not None:
            self._warm.cancel()
        await self.cpu.close()
        await asyncio.get_running_loop().run_in_executor(None, self.runtime.close)

    async def warm_up(self) -> None:
        """Count PROBE_TEXT with the default model: ready when it counts (/readyz)."""
        model, options = self.count_options(None)
        try:
            r = await self.acount(PROBE_TEXT, model, options)
        except OmnitokError as e:
            self.not_ready = f"the default model cannot count: {e}"  # /readyz shows it without paths
            from .middleware import log

            log.warning("omnitok serve: not ready: %s", self.not_ready)  # the operator's log: in full
            return
        except Exception as e:  # a broken install: reported by /readyz, never raised
            self.not_ready = f"the default model cannot count ({type(e).__name__})"
            return
        self.ready_info = {"model": r.model, "encoding": r.encoding, "strategy": r.strategy, "exact": r.exact}
        # The module a long text's GIL-free count imports (unicode_guard.count_long): ~0.3 s with
        # the GIL held, here before /readyz says ready rather than in the first such request.
        with contextlib.suppress(ImportError):
            await asyncio.get_running_loop().run_in_executor(None, importlib.import_module, "awkward")
        if self.freeze_gc:
            # What is loaded now (the libraries, the tokenizer) lives as long as the process: out
            # of the collector's sight, so that a full collection under load scans only what
            # requests made instead of every object of the libraries (a pause each time).
            gc.collect()
            gc.freeze()
        self.ready, self.not_ready = True, ""

    # --- the request's options and limits ---

    def count_options(
        self, model_id: str | None, encoding: str | None = None, online: bool | None = None, strict: bool | None = None
    ) -> tuple[str | None, dict]:
        """(model, Counter options) for a request: the server's settings, with the request's own."""
        config = self.config
        model = model_id if model_id is not None else config.model
        options: dict[str, Any] = {"engine": config.engine, "cache": config.cache}
        if config.cache_dir:
            options["cache_dir"] = config.cache_dir
        if config.l3_url:
            options["l3_url"] = config.l3_url
        if encoding:
            options["encoding"] = encoding
        online = config.online if online is None else online
        if online is not None:
            options["online"] = online
        if config.strict if strict is None else strict:
            options["strict"] = True
        return model, options

    def count_plan(
        self, model_id: str | None, encoding: str | None, online: bool | None, strict: bool | None
    ) -> tuple[str | None, dict, tuple]:
        """(model, Counter options, the runtime's pool key) for a request's options: count_options
        made once per distinct request options (the first PLANS_KEPT of them; past that, each time)."""
        request = (model_id, encoding, online, strict)
        plan = self._plans.get(request)
        if plan is None:
            model, options = self.count_options(model_id, encoding, online, strict)
            plan = (model, options, key(model, options))
            if len(self._plans) < PLANS_KEPT:
                self._plans[request] = plan
        return plan

    async def within(self, awaitable, on_timeout=None):
        """`awaitable` under --timeout: at the deadline it is cancelled (a worker process's job is
        killed with it), `on_timeout()` is called, and the client gets 504."""
        timeout = self.config.request_timeout
        try:
            return await asyncio.wait_for(awaitable, timeout)
        except asyncio.TimeoutError:
            if on_timeout is not None:
                on_timeout()
            raise ServeError(
                504, "timeout", f"the request took longer than the server's limit of {timeout:g} s"
            ) from None

    async def in_worker(self, job, *args):
        """A job of omnitok.serve.workers under --timeout (waiting for a worker included)."""
        deadline = asyncio.get_running_loop().time() + self.config.request_timeout
        return await self.within(self.cpu.run(job, *args, deadline=deadline))

    # --- counting ---

    async def acount(self, item, model: str | None, options: dict):
        """A CountResult: at once for a short text an idle local Counter can take, else in the
        thread pool as one request (not under the timeout: the caller puts it there)."""
        rt = self.runtime
        if type(item) is str and len(item) <= INLINE_MAX_CHARS:
            r = rt.count_inline(item, model, **options)
            if r is not None:
                return r
        return (await rt.request(rt.count_batch, [item], model, options))[0]

    def counted(self, tokens: int, model: str, encoding: str, strategy: str, exact: bool, error_band) -> dict:
        """Record one count (/stats, /metrics) and give /count-tokens' answer for it."""
        self.totals.counted(tokens)
        self.metrics.counted(model, strategy, tokens, 1)
        return self.describe(tokens, model, encoding, strategy, exact, error_band)

    @staticmethod
    def describe(tokens: int, model: str, encoding: str, strategy: str, exact: bool, error_band) -> dict:
        """/count-tokens' answer for one count."""
        metadata = {"encoding": encoding}
        if error_band is not None:
            metadata["error_band"] = error_band
        return {
            "token_count": tokens,
            "model_id": model,
            "strategy_used": strategy,
            "is_exact": exact,
            "metadata": metadata,
        }

    async def count_text(
        self, text: str, model_id: str | None, encoding: str | None, online: bool | None, strict: bool | None
    ) -> dict:
        """/count-tokens for a text (the route; the fast path in front of it calls count_result and
        writes the same answer itself)."""
        r = await self.count_result(text, model_id, encoding, online, strict)
        return self.counted(r.tokens, r.model, r.encoding, r.strategy, r.exact, r.error_band)

    def count_now(
        self, text: str, model_id: str | None, encoding: str | None, online: bool | None, strict: bool | None
    ):
        """count_result's CountResult when the runtime counts it at once (count_inline), else None."""
        return self.runtime.count_inline_key(text, self.count_plan(model_id, encoding, online, strict)[2])

    async def count_result(
        self, text: str, model_id: str | None, encoding: str | None, online: bool | None, strict: bool | None
    ):
        """The CountResult for /count-tokens' text, not yet recorded: counted at once when the
        runtime can (count_inline), else in the thread pool under the timeout."""
        model, options, k = self.count_plan(model_id, encoding, online, strict)
        r = self.runtime.count_inline_key(text, k)
        if r is None:
            r = (await self.within(self.runtime.request(self.runtime.count_batch, [text], model, options)))[0]
        return r
