"""Warnings are one per cause, and a kind of warning keeps at most notices.MAX_PER_KIND causes:
the causes may come from callers (model ids sent to a server), and neither memory nor the log
may grow with them."""

from __future__ import annotations

import omnitok
from omnitok import notices


def test_a_kind_of_warning_stops_after_its_bound_and_says_so_once(warnings_seen):
    n = notices.MAX_PER_KIND
    for i in range(3 * n):
        notices.warn_once(f"kind-a:{i}", f"a {i}")
        notices.warn_once(f"kind-a:{i}", f"a {i} again")  # the same cause: never twice
    assert warnings_seen[:n] == [f"a {i}" for i in range(n)]
    assert warnings_seen[n:] == [f"{n} warnings of the kind 'kind-a' so far: its further ones are not shown"]
    assert len(notices._seen) == n  # nothing more kept for the kind
    assert notices.warn_once("kind-b", "b") and warnings_seen[-1] == "b"  # other kinds go on
    notices.reset()
    assert notices.warn_once("kind-a:0", "a 0") and warnings_seen[-1] == "a 0"  # a new run starts afresh


def test_distinct_model_ids_without_files_warn_a_bounded_number_of_times(warnings_seen):
    n = notices.MAX_PER_KIND
    for i in range(n + 8):
        counter = omnitok.Counter(f"example-org/no-such-model-{i}", online=False)
        assert counter.count_text("hello world").exact is False  # the heuristic, as each warning says
    assert len(warnings_seen) == n + 1
    assert all("no-such-model-" in w and "heuristic" in w for w in warnings_seen[:n])
    assert warnings_seen[n] == f"{n} warnings of the kind 'no-assets' so far: its further ones are not shown"
