"""Group speech segments into batches under a padded-frame budget."""

from __future__ import annotations

from collections.abc import Sequence


def plan_batches(frame_counts: Sequence[int], frame_budget: int, max_batch_size: int) -> list[list[int]]:
    """Indices of ``frame_counts`` grouped into batches.

    Segments are sorted longest first, so each batch pads to its first member and the
    largest batch (the one that may not fit in memory) runs first. A batch's padded size,
    longest x count, stays within ``frame_budget``; a segment longer than the budget runs
    alone.
    """
    order = sorted(range(len(frame_counts)), key=lambda i: (-frame_counts[i], i))
    batches: list[list[int]] = []
    current: list[int] = []
    for index in order:
        if current:
            longest = frame_counts[current[0]]
            if longest * (len(current) + 1) > frame_budget or len(current) >= max_batch_size:
                batches.append(current)
                current = []
        current.append(index)
    if current:
        batches.append(current)
    return batches
