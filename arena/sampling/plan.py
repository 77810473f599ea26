"""The adaptive policy in the arena: a plan precomputed from the battle counts, drawn from by
battle requests.

The leaderboard (leaderboard/pipeline/sampling_plan.py, on beat every
ARENA_LEADERBOARD_REFRESH_SECONDS) counts the valid battles between each two models of the
current pool and `sampling_plan_store` stores the adaptive pair probabilities computed from those
counts alone (never from outcomes or ratings: that is what keeps the ratings unbiased,
see arena/sampling/adaptive.py). `plan_pair_draw` (in `battle_create`) only looks up the latest plan
(cached per process by id) and draws: a model disabled since is cut out of the plan, and a pool
with a model the plan does not know falls back to the weighted policy until the next plan.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np
from django.conf import settings

from arena.models import ArenaModel, SamplingPlan, SamplingPolicy
from arena.sampling.adaptive import adaptive_pair_probabilities, battle_shares, pair_cdf, pair_draw
from arena.sampling.policy import pair_probabilities, pair_sample

PLANS_KEPT = 10


def sampling_plan_store(
    *, pool: Sequence[ArenaModel], battles: np.ndarray, n_votes: int
) -> SamplingPlan:
    """Store the adaptive pair probabilities for `pool` given `battles`, the number of battles
    between each two of its models (symmetric, once per pair), and drop all but the newest
    PLANS_KEPT plans."""
    probabilities = adaptive_pair_probabilities(battles, weights=[m.sampling_weight for m in pool])
    plan = SamplingPlan.objects.create(
        pool=[m.name for m in pool],
        probabilities=probabilities.tolist(),
        shares=battle_shares(probabilities).tolist(),
        n_votes=n_votes,
    )
    stale = SamplingPlan.objects.order_by("-created_at", "-id").values_list("id", flat=True)
    SamplingPlan.objects.filter(id__in=list(stale[PLANS_KEPT:])).delete()
    return plan


def sampling_plan_latest() -> SamplingPlan | None:
    return SamplingPlan.objects.order_by("-created_at", "-id").first()


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


def policy_battle_shares(pool: Sequence[ArenaModel]) -> list[float]:
    """Each model's expected share of new battles (the shares sum to 2) under the pair
    probabilities `plan_pair_draw` draws from for `pool`: the latest adaptive plan cut to the
    pool, or the weights where the weighted policy applies (policy, no plan yet, a model the plan
    has not seen). The transparency table shows these, so it shows what the arena does."""
    if len(pool) < 2:
        return [0.0] * len(pool)
    weights = [m.sampling_weight for m in pool]
    probabilities = pair_probabilities(weights)
    if settings.ARENA_SAMPLING_POLICY == SamplingPolicy.ADAPTIVE:
        latest = sampling_plan_latest()
        if latest is not None:
            names, plan = _plan_arrays(latest.id)
            slot = {name: k for k, name in enumerate(names)}
            if all(m.name in slot for m in pool):
                keep = [slot[m.name] for m in pool]
                restricted = plan[np.ix_(keep, keep)]
                if restricted.sum() > 0:
                    probabilities = restricted / restricted.sum()
    return [float(s) for s in battle_shares(probabilities)]
