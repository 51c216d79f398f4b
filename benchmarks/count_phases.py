"""Where a whole `omnitok count` process spends its time besides the engine (issue 26 item 1):
the command run in this process with the pipeline's steps wrapped to note the time (wall, and
this process's CPU) at each, printed as JSON on stderr's last line. `make bench`'s "fixed costs"
step runs it; by hand:

    python -m benchmarks.count_phases count -m gpt-4o -q FILE -o /dev/null

Phases: imports, reading the command line and resolving the model (up to the engine's load),
the engine's load, planning and warming up before the fork (numpy, the Unicode guard's table),
the fork, the first shard's result, the merge of the rest, closing the workers and the
reference-engine process, and the exit."""

from __future__ import annotations

import json
import sys
import time

T0, C0 = time.perf_counter(), time.process_time()
MARKS: list[tuple[str, float, float]] = []


def mark(name: str) -> None:
    MARKS.append((name, time.perf_counter() - T0, time.process_time() - C0))


def _wrap() -> None:
    from omnitok import pipeline
    from omnitok.tokenizers import engines

    start_pool, count_shards = pipeline._start_shard_pool, pipeline._count_shards
    close_pool, ref_close = pipeline.close_pool, pipeline._Reference.close
    engine_init = engines.GigatokenEngine.__init__

    def _start_pool(state, jobs, *rest):
        mark("warmed up, forking")
        pool = start_pool(state, jobs, *rest)
        mark("forked")
        return pool

    def _count(*args, **kw):
        mark("planning shards")
        first = True
        for item in count_shards(*args, **kw):
            if first:
                mark("first result merged")
                first = False
            yield item
        mark("closed")

    def _close_pool(pool):
        mark("last result merged")
        close_pool(pool)
        mark("workers stopped")

    def _ref_close(self):
        ref_close(self)
        mark("reference process stopped")

    def _engine_init(self, *args, **kw):
        mark("loading the engine")
        engine_init(self, *args, **kw)
        mark("engine loaded")

    pipeline._start_shard_pool, pipeline._count_shards = _start_pool, _count
    pipeline.close_pool, pipeline._Reference.close = _close_pool, _ref_close
    engines.GigatokenEngine.__init__ = _engine_init


def main(argv: list[str]) -> None:
    _wrap()
    mark("imported")
    from omnitok.cli.app import main as omnitok_main

    code = 0
    try:
        omnitok_main(argv)
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    mark("done")
    print(json.dumps({"code": code, "marks": MARKS}), file=sys.stderr)


if __name__ == "__main__":
    main(sys.argv[1:])
