"""How hard it is to move the leaderboard with fake votes, and how much of it the detector stops.

Pure numpy (no Django import); ``manage.py integrity_report`` prints what these functions return,
for the votes in the database or for a simulated arena.

The attacker model
    The attacker casts *perfectly targeted* votes: every fake vote is a battle between the two
    models of an adjacent pair, won by the lower one (it knows which answer is whose, e.g. from
    the style, and can get that pairing as often as it likes). That is the cheapest way to swap
    two models; real attacks need more votes. With the detector on, each fake identity stops one
    vote before the disagreement test would flag it (against the consensus at the time, which
    includes the votes the attacker's earlier identities slipped through), spreads its votes so
    that no window holds a burst, and gets sides at random (so the side test sees a fair coin).
    The number of identities is then what the attack costs: each needs its own browser session,
    and identities are where rate limits and sign-ups bite.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy.special import expit

from leaderboard.engine.anomaly import (
    CONSENSUS_L2,
    Thresholds,
    VoterResult,
    cell_counts,
    detect_voters,
    strengths_from_cells,
    votes_to_flag,
)
from leaderboard.engine.pairs import BOTH_BAD, MODEL_A, MODEL_B, TIE
from leaderboard.engine.ratings import NotIdentifiableError, theta_to_rating

Float = NDArray[np.float64]
Int = NDArray[np.int64]

HONEST, TARGETED, FAN, SIDE, BURST = "honest", "targeted", "fan", "side", "burst"
ADVERSARY_KINDS = (TARGETED, FAN, SIDE, BURST)
# Honest voters cast a vote every two minutes on average; a burst voter every five seconds.
HONEST_GAP_SECONDS = 120.0
BURST_GAP_SECONDS = 5.0
SIMULATED_DAYS = 30


@dataclass(frozen=True)
class SimulatedVotes:
    """Votes as parallel arrays; ``kind[v]`` says how voter ``v`` behaves."""

    voter: Int
    model_a: Int
    model_b: Int
    outcome: Int
    tstamp: Float
    kind: tuple[str, ...]


def _bt_outcomes(
    rng: np.random.Generator, strengths: Float, a: Int, b: Int, tie_rate: float
) -> Int:
    win = rng.random(a.size) < expit(strengths[a] - strengths[b])
    outcome = np.where(win, MODEL_A, MODEL_B)
    tie = rng.random(a.size) < tie_rate
    both_bad = rng.random(a.size) < 0.5
    return np.where(tie, np.where(both_bad, BOTH_BAD, TIE), outcome).astype(np.int64)


def _random_pairs(rng: np.random.Generator, n_models: int, size: int) -> tuple[Int, Int]:
    a = rng.integers(0, n_models, size)
    b = rng.integers(0, n_models - 1, size)
    return a, b + (b >= a)


def simulate_arena(
    rng: np.random.Generator,
    strengths: Float,
    *,
    honest_voters: int,
    mean_votes: float,
    adversaries: Mapping[str, int] | None = None,
    adversary_votes: int = 40,
    pair: tuple[int, int] | None = None,
    tie_rate: float = 0.1,
) -> SimulatedVotes:
    """An arena: honest voters following Bradley-Terry, optionally adversarial voters.

    Parameters
    ----------
    rng : numpy.random.Generator
        All randomness.
    strengths : array of float
        True log-strengths of the models.
    honest_voters : int
        Each casts a geometric number of votes (mean ``mean_votes``) on uniformly drawn pairs,
        with Bradley-Terry outcomes (a tie, half of them both-bad, with probability
        ``tie_rate``), a vote every ``HONEST_GAP_SECONDS`` on average.
    mean_votes : float
        At least 1.
    adversaries : mapping of str to int, optional
        How many voters of each kind in ``ADVERSARY_KINDS``, each casting ``adversary_votes``
        votes: ``targeted`` votes for ``pair[1]`` in ``pair[1]``-vs-``pair[0]`` battles;
        ``fan`` votes for ``pair[1]`` in battles against any other model; ``side`` votes A in
        random battles; ``burst`` votes honestly but every ``BURST_GAP_SECONDS``.
    adversary_votes : int
        Votes per adversary.
    pair : (int, int), optional
        (upper, lower) model indices that ``targeted`` and ``fan`` adversaries push the lower
        one of; default the two strongest, the second pushed over the first.
    tie_rate : float
        Share of honest votes that are ties.

    Returns
    -------
    SimulatedVotes
        Voters 0..honest_voters-1 are honest, the adversaries follow.
    """
    strengths = np.asarray(strengths, np.float64)
    n = strengths.size
    if n < 2 or mean_votes < 1:
        raise ValueError("need at least two models and mean_votes >= 1")
    upper, lower = pair if pair is not None else tuple(np.argsort(-strengths)[:2].tolist())
    kinds = [HONEST] * honest_voters
    for kind, count in (adversaries or {}).items():
        if kind not in ADVERSARY_KINDS:
            raise ValueError(f"unknown adversary kind {kind!r}; known: {ADVERSARY_KINDS}")
        kinds += [kind] * count
    per_voter = np.r_[
        rng.geometric(1.0 / mean_votes, honest_voters),
        np.full(len(kinds) - honest_voters, adversary_votes),
    ].astype(np.int64)
    voter = np.repeat(np.arange(len(kinds)), per_voter)
    kind_of = np.array(kinds)[voter] if voter.size else np.array([], dtype=str)
    a, b = _random_pairs(rng, n, voter.size)
    outcome = _bt_outcomes(rng, strengths, a, b, tie_rate)
    flip = rng.random(voter.size) < 0.5  # the side the pushed model is shown on
    targeted = kind_of == TARGETED
    a = np.where(targeted, np.where(flip, lower, upper), a)
    b = np.where(targeted, np.where(flip, upper, lower), b)
    fan = kind_of == FAN
    opponent = rng.integers(0, n - 1, voter.size)
    opponent = opponent + (opponent >= lower)
    a = np.where(fan, np.where(flip, lower, opponent), a)
    b = np.where(fan, np.where(flip, opponent, lower), b)
    pushed = targeted | fan
    outcome = np.where(pushed, np.where(flip, MODEL_A, MODEL_B), outcome)
    outcome = np.where(kind_of == SIDE, MODEL_A, outcome)
    gaps = np.where(kind_of == BURST, BURST_GAP_SECONDS, HONEST_GAP_SECONDS)
    gaps = rng.exponential(gaps)
    start = rng.uniform(0, SIMULATED_DAYS * 86400.0, len(kinds))
    first = np.r_[0, np.cumsum(per_voter)[:-1]]
    # Each voter's votes at its own start plus the running sum of its own gaps.
    running = np.cumsum(gaps)
    before = np.r_[0.0, running][first]
    tstamp = start[voter] + running - np.repeat(before, per_voter)
    return SimulatedVotes(voter, a.astype(np.int64), b.astype(np.int64), outcome, tstamp,
                          tuple(kinds))  # fmt: skip


# --- swaps ----------------------------------------------------------------------------------------


def leaderboard_strengths(cells: Int, n_models: int) -> Float:
    """Strengths as the leaderboard fits them (no penalty); a tiny penalty only where a model
    won or lost every battle, whose unpenalised strength is infinite."""
    try:
        return strengths_from_cells(cells, n_models, l2=0.0)
    except NotIdentifiableError:
        return strengths_from_cells(cells, n_models, l2=1e-6)


def _injected(cells: Int, n_models: int, upper: int, lower: int, k: int) -> Int:
    out = cells.copy()
    out[(lower * n_models + upper) * 4 + MODEL_A] += k
    return out


def swap_votes(cells: Int, n_models: int, upper: int, lower: int, *, limit: int = 10**8) -> int:
    """The fewest votes "``lower`` beats ``upper``" after which ``lower``'s fitted strength is
    above ``upper``'s (0 if it already is).

    Raises
    ------
    ValueError
        Not swapped even with ``limit`` votes (the two models are in different components).
    """

    def swapped(k: int) -> bool:
        theta = leaderboard_strengths(_injected(cells, n_models, upper, lower, k), n_models)
        return bool(theta[lower] > theta[upper])

    if swapped(0):
        return 0
    high = 1
    while not swapped(high):
        high *= 2
        if high > limit:
            raise ValueError(f"models {lower} and {upper} do not swap within {limit} votes")
    low = high // 2  # not swapped
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (low, mid) if swapped(mid) else (mid, high)
    return high


@dataclass(frozen=True)
class Attack:
    """The cost of swapping one adjacent pair."""

    upper: int
    lower: int
    votes: int
    # With the detector on: identities needed, and the most votes the first one can cast
    # (later ones can cast more: the consensus drifts towards the attack as it goes).
    identities: int | None
    votes_per_identity: int | None


def attack_cost(
    cells: Int, n_models: int, upper: int, lower: int, thresholds: Thresholds
) -> Attack:
    """Votes to swap ``lower`` over ``upper``, and identities needed when each stays under the
    disagreement test's threshold (see the module docstring). ``identities`` is None when an
    identity would be flagged at its first vote."""
    votes = swap_votes(cells, n_models, upper, lower)
    level = 1.0 / thresholds.alpha
    injected, identities, first_cap = 0, 0, None
    fitted_at, cap = -1, 0
    while injected < votes:
        # Refit the consensus when the injected votes moved it by more than 2% of the attack.
        if fitted_at < 0 or injected - fitted_at > 0.02 * votes:
            theta = strengths_from_cells(
                _injected(cells, n_models, upper, lower, injected), n_models, l2=CONSENSUS_L2
            )
            flag_at = votes_to_flag(float(expit(theta[lower] - theta[upper])), n_models, level)
            cap = votes - injected if flag_at is None else flag_at - 1
            fitted_at = injected
        if cap < 1:
            return Attack(upper, lower, votes, None, 0)
        first_cap = cap if first_cap is None else first_cap
        injected += min(cap, votes - injected)
        identities += 1
    return Attack(upper, lower, votes, identities, first_cap)


def adjacent_pairs(theta: Float, rated: NDArray[np.bool_]) -> list[tuple[int, int]]:
    """(upper, lower) for each pair of neighbours among the rated models, best first."""
    order = [int(i) for i in np.argsort(-theta, kind="stable") if rated[i]]
    return list(itertools.pairwise(order))


# --- injection trials -----------------------------------------------------------------------------


@dataclass
class KindOutcome:
    voters: int = 0
    flagged: int = 0
    votes: int = 0
    votes_excluded: int = 0
    flagged_after: list[int] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        after = self.flagged_after
        return {
            "voters": self.voters,
            "flagged": self.flagged,
            "flagged_share": self.flagged / self.voters if self.voters else 0.0,
            "votes": self.votes,
            "votes_excluded": self.votes_excluded,
            "votes_excluded_share": self.votes_excluded / self.votes if self.votes else 0.0,
            "median_flagged_after": float(np.median(after)) if after else None,
        }


def injection_trial(
    simulated: SimulatedVotes, n_models: int, thresholds: Thresholds
) -> tuple[dict[str, KindOutcome], list[VoterResult]]:
    """Run the detector over a simulated arena, as the refresh does (consensus on every vote),
    and count, per kind of voter, who was flagged and how many of their votes it excluded."""
    s = simulated
    consensus = cell_counts(s.model_a, s.model_b, s.outcome, n_models)
    results = detect_voters(
        s.voter, s.model_a, s.model_b, s.outcome, s.tstamp,
        consensus=consensus, n_models=n_models, thresholds=thresholds,
    )  # fmt: skip
    outcomes = {kind: KindOutcome() for kind in dict.fromkeys(s.kind)}
    for result in results:
        entry = outcomes[s.kind[result.voter]]
        entry.voters += 1
        entry.votes += result.n_votes
        if result.flagged:
            entry.flagged += 1
            entry.votes_excluded += result.n_votes
            assert result.flagged_after is not None
            entry.flagged_after.append(result.flagged_after)
    return outcomes, results


# --- the report -----------------------------------------------------------------------------------

ATTACKER_MODEL = (
    "perfectly targeted fake votes: each is a battle between the two models of the pair, won by "
    "the lower one. Detector off: one identity casts them all. Detector on: each identity stops "
    "one vote before the disagreement test would flag it (consensus fitted with the earlier "
    "identities' votes), spaces its votes below the burst limit and gets sides at random."
)


def pair_report(cells: Int, names: tuple[str, ...], thresholds: Thresholds) -> list[dict[str, Any]]:
    """Per adjacent pair of the board fitted on ``cells``: votes and identities to swap it."""
    n = len(names)
    per_model = cells.reshape(n, n, 4).sum(axis=2)
    battles = per_model + per_model.T
    rated = battles.sum(axis=1) > 0
    theta = leaderboard_strengths(cells, n)
    rating = theta_to_rating(theta)
    rows = []
    for upper, lower in adjacent_pairs(theta, rated):
        attack = attack_cost(cells, n, upper, lower, thresholds)
        rows.append(
            {
                "upper": names[upper],
                "lower": names[lower],
                "rating_upper": round(float(rating[upper]), 1),
                "rating_lower": round(float(rating[lower]), 1),
                "battles_between": int(battles[upper, lower]),
                "votes_to_swap": attack.votes,
                "identities_to_swap": attack.identities,
                "votes_per_identity": attack.votes_per_identity,
            }
        )
    return rows


def injection_report(
    rng: np.random.Generator,
    strengths: Float,
    thresholds: Thresholds,
    *,
    honest_voters: int,
    mean_votes: float,
    adversaries: Mapping[str, int],
    adversary_votes: int,
    pair: tuple[int, int] | None = None,
) -> dict[str, Any]:
    """Simulate honest and adversarial voters on ``strengths`` and run the detector: per kind,
    voters flagged and votes excluded; the false-positive rate is the honest voters' share."""
    simulated = simulate_arena(
        rng, strengths, honest_voters=honest_voters, mean_votes=mean_votes,
        adversaries=adversaries, adversary_votes=adversary_votes, pair=pair,
    )  # fmt: skip
    outcomes, _ = injection_trial(simulated, len(strengths), thresholds)
    kinds = {kind: outcome.as_dict() for kind, outcome in outcomes.items()}
    injected = [o for kind, o in outcomes.items() if kind != HONEST]
    total = sum(o.votes for o in injected)
    honest = outcomes.get(HONEST, KindOutcome())
    return {
        "setup": {
            "honest_voters": honest_voters,
            "mean_votes": mean_votes,
            "adversaries": dict(adversaries),
            "adversary_votes": adversary_votes,
        },
        "kinds": kinds,
        "injected_votes": total,
        "injected_caught": sum(o.votes_excluded for o in injected) / total if total else None,
        "false_positive_rate": honest.flagged / honest.voters if honest.voters else None,
        "honest_votes_excluded": (honest.votes_excluded / honest.votes if honest.votes else None),
    }
