"""The adaptive sampling plan, computed from the battle counts the leaderboard reads.

Only counts, never outcomes or ratings (arena/sampling/adaptive.py says why). The plan is stored
in the arena's SamplingPlan table (arena/sampling/plan.py), which battle requests draw from: the
leaderboard builds on the arena, never the other way round.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from arena import selectors
from arena.models import ArenaModel, SamplingPlan, Vote
from arena.sampling.plan import sampling_plan_latest, sampling_plan_store
from leaderboard.engine.pairs import aggregate_counts, battle_count_matrix
from leaderboard.pipeline.battles import battles_aggregated, model_names, valid_votes


def sampling_plan_refresh() -> SamplingPlan | None:
    """A new plan for the current pool, unless the pool and the number of votes are unchanged."""
    pool = selectors.model_pool()
    if len(pool) < 2:
        return None
    latest = sampling_plan_latest()
    n_votes = Vote.objects.filter(is_valid=True).count()
    if latest and latest.pool == [m.name for m in pool] and latest.n_votes == n_votes:
        return None
    return sampling_plan_create(pool=pool)


def sampling_plan_create(*, pool: Sequence[ArenaModel]) -> SamplingPlan:
    """Store the adaptive pair probabilities for `pool` given the valid battles so far."""
    names, index = model_names()
    data = battles_aggregated(valid_votes(), names, index)
    counts = aggregate_counts(data.model_a, data.model_b, data.outcome, len(names))
    slots = np.array([index[m.id] for m in pool], dtype=np.int64)
    battles = battle_count_matrix(counts)[np.ix_(slots, slots)] / 2  # symmetric: once per order
    return sampling_plan_store(pool=pool, battles=battles, n_votes=len(data))
