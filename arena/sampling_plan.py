"""The adaptive policy in the arena: a plan precomputed by beat, drawn from by battle requests.

`sampling_plan_create` (beat, every ARENA_LEADERBOARD_REFRESH_SECONDS) counts the valid battles
between each two models of the current pool and stores the adaptive pair probabilities computed
from those counts alone (never from outcomes or ratings: that is what keeps the ratings unbiased,
see arena/adaptive.py). `plan_pair_draw` (in `battle_create`) only looks up the latest plan
(cached per process by id) and draws: a model disabled since is cut out of the plan, and a pool
with a model the plan does not know falls back to the weighted policy until the next plan.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np
from django.conf import settings
from django.db.models import Count

from arena import selectors
from arena.adaptive import adaptive_pair_probabilities, battle_shares, pair_cdf, pair_draw
from arena.models import ArenaModel, SamplingPlan, SamplingPolicy, Vote
from arena.sampling import pair_sample
from leaderboard.engine.pairs import aggregate_counts, battle_count_matrix
from leaderboard.pipeline.battles import battles_aggregated, model_names, valid_votes

PLANS_KEPT = 10


def sampling_plan_refresh() -> SamplingPlan | None:
    """A new plan for the current pool, unless the pool and the number of votes are unchanged."""
    pool = selectors.model_pool()
    if len(pool) < 2:
        return None
    latest = SamplingPlan.objects.order_by("-created_at", "-id").first()
    n_votes = Vote.objects.filter(is_valid=True).count()
    if latest and latest.pool == [m.name for m in pool] and latest.n_votes == n_votes:
        return None
    plan = sampling_plan_create(pool=pool)
    stale = SamplingPlan.objects.order_by("-created_at", "-id").values_list("id", flat=True)
    SamplingPlan.objects.filter(id__in=list(stale[PLANS_KEPT:])).delete()
    return plan


def sampling_plan_create(*, pool: Sequence[ArenaModel]) -> SamplingPlan:
    """Store the adaptive pair probabilities for `pool` given the valid battles so far."""
    names, index = model_names()
    data = battles_aggregated(valid_votes(), names, index)
    counts = aggregate_counts(data.model_a, data.model_b, data.outcome, len(names))
    slots = np.array([index[m.id] for m in pool], dtype=np.int64)
    battles = battle_count_matrix(counts)[np.ix_(slots, slots)] / 2  # symmetric: once per order
    probabilities = adaptive_pair_probabilities(battles, weights=[m.sampling_weight for m in pool])
    return SamplingPlan.objects.create(
        pool=[m.name for m in pool],
        probabilities=probabilities.tolist(),
        shares=battle_shares(probabilities).tolist(),
        n_votes=len(data),
    )


@functools.lru_cache(maxsize=4)
def _plan_arrays(plan_id: int) -> tuple[tuple[str, ...], np.ndarray]:
    plan = SamplingPlan.objects.get(id=plan_id)
    return tuple(plan.pool), np.asarray(plan.probabilities, dtype=np.float64)


def plan_pair_draw(pool: Sequence[ArenaModel], rng: np.random.Generator) -> tuple[int, int]:
    """(left, right) indices into `pool`, drawn by the deployment's policy."""
    weights = [m.sampling_weight for m in pool]
    if settings.ARENA_SAMPLING_POLICY != SamplingPolicy.ADAPTIVE:
        return pair_sample(weights, rng)
    plan_id = SamplingPlan.objects.order_by("-created_at", "-id").values_list("id", flat=True)
    latest = plan_id.first()
    if latest is None:
        return pair_sample(weights, rng)
    names, probabilities = _plan_arrays(latest)
    slot = {name: k for k, name in enumerate(names)}
    if any(m.name not in slot for m in pool):
        return pair_sample(weights, rng)  # a model the plan has not seen: until the next plan
    keep = [slot[m.name] for m in pool]
    restricted = probabilities[np.ix_(keep, keep)]
    if not restricted.sum() > 0:
        return pair_sample(weights, rng)
    return pair_draw(pair_cdf(restricted), rng)


def battle_shares_observed() -> dict[str, float]:
    """Each model's actual share of the battles voted on (sums to 2), for the transparency page."""
    total = Vote.objects.count()
    if not total:
        return {}
    shares: dict[str, float] = {}
    for side in ("model_a__name", "model_b__name"):
        for row in Vote.objects.values(side).annotate(n=Count("id")):
            shares[row[side]] = shares.get(row[side], 0.0) + row["n"] / total
    return shares
