"""Selection under an exact token budget.

Units are taken by value per token (score / tokens**gamma: gamma 0 is pure relevance, 1 pure
density), each at its cost counted with its separator, while they fit. Token counts are not
additive at the seams, so the kept units are then rendered in their original order and counted
exactly with the model's own tokenizer: while the text is over the budget the least valuable
unit goes; then units that still fit the slack are tried, each confirmed by an exact count. The
result is never over the budget.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .segment import Unit, render, separator_widths

FILL_TRIES = 8


def select(
    units: list[Unit],
    scores: np.ndarray,
    budget: int,
    count: Callable[[str], int],
    gap_marker: str | None = None,
    gamma: float = 0.5,
    excluded: set[int] | frozenset = frozenset(),
) -> tuple[list[bool], str, int]:
    """(keep flags, compressed text, its exact token count <= budget)."""
    n = len(units)
    keep = [False] * n
    if n == 0 or budget <= 0:
        return keep, "", 0
    cost = np.array([max(u.tokens, 1) for u in units], dtype=float)
    value = np.asarray(scores, dtype=float) / cost**gamma
    # A title is kept only with some of its passage's content, after the content is chosen.
    titles = {u.passage: u.index for u in units if u.kind == "title"}
    order = [i for i in np.lexsort((np.arange(n), -value)) if i not in excluded and units[i].kind != "title"]
    marker_cost = (count(f" {gap_marker} ") if gap_marker else 0) + 1
    used = 0
    widths = separator_widths(units)  # once: the text is rendered again after each change
    for i in order:
        extra = cost[i] + (marker_cost if gap_marker else 0)
        if used + extra <= budget:
            keep[i] = True
            used += extra
    text = render(units, keep, gap_marker, widths)
    tokens = count(text)
    kept_by_value = [i for i in order if keep[i]]
    while tokens > budget and kept_by_value:
        keep[kept_by_value.pop()] = False
        text = render(units, keep, gap_marker, widths)
        tokens = count(text)
    tries = 0
    with_titles = []
    for i in order:  # titles of kept passages, most valuable passage first
        t = titles.get(units[i].passage)
        if keep[i] and t is not None and t not in with_titles:
            with_titles.append(t)
    for i in with_titles + order:
        if tries >= FILL_TRIES or tokens >= budget:
            break
        if keep[i] or cost[i] > budget - tokens:
            continue
        keep[i] = True
        candidate = render(units, keep, gap_marker, widths)
        n_tokens = count(candidate)
        if n_tokens <= budget:
            text, tokens = candidate, n_tokens
        else:
            keep[i] = False
            tries += 1
    return keep, text, tokens
