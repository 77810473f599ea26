"""The voter anomaly detector (pure): validity under honest voting, power against adversaries."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import expit

from leaderboard.engine.anomaly import (
    Thresholds,
    burst,
    cell_counts,
    detect_voters,
    disagreement_wealth,
    first_crossing,
    side_wealth,
)
from leaderboard.pipeline.integrity import injection_trial, simulate_arena

STRENGTHS = np.linspace(1.5, -1.5, 8)


def test_an_honest_voter_crosses_one_over_alpha_at_most_alpha_of_the_time() -> None:
    """Ville's inequality: the e-process's running maximum reaches 1/alpha with probability at
    most alpha under the null, however long the voter votes."""
    rng = np.random.default_rng(11)
    alpha, voters, votes = 0.05, 2000, 60
    crossed = 0
    for _ in range(voters):
        a = rng.integers(0, 8, votes)
        b = (a + rng.integers(1, 8, votes)) % 8
        p_a = expit(STRENGTHS[a] - STRENGTHS[b])
        chose_a = rng.random(votes) < p_a
        winner, loser = np.where(chose_a, a, b), np.where(chose_a, b, a)
        p = np.where(chose_a, p_a, 1 - p_a)
        wealth = disagreement_wealth(winner, loser, p, 8)
        crossed += first_crossing(wealth, 1 / alpha) is not None
    # alpha plus three binomial standard errors.
    assert crossed / voters <= alpha + 3 * np.sqrt(alpha * (1 - alpha) / voters)


def test_a_fan_of_a_weak_model_is_flagged_within_a_few_dozen_votes() -> None:
    # Model 7 is the weakest: p(7 beats 0) = expit(-3), yet this voter always picks it.
    n = 40
    winner, loser = np.full(n, 7), np.arange(n) % 7
    p = expit(STRENGTHS[winner] - STRENGTHS[loser])
    after = first_crossing(disagreement_wealth(winner, loser, p, 8), 100.0)
    assert after is not None and after <= 15


def test_side_test_flags_always_a_and_not_alternating_sides() -> None:
    assert first_crossing(side_wealth(np.ones(40, bool)), 100.0) is not None
    assert first_crossing(side_wealth(np.arange(200) % 2 == 0), 100.0) is None


def test_burst_counts_the_votes_in_each_window_ending_at_a_vote() -> None:
    t = np.array([0.0, 10, 20, 30, 1000, 1001, 1002])
    assert burst(t, votes=3, seconds=60) == (4, 4)  # the 4th vote is the 4th within 60 s
    assert burst(t, votes=4, seconds=60) == (4, None)
    assert burst(t, votes=2, seconds=5) == (3, 7)


def test_detector_catches_simulated_adversaries_and_spares_honest_voters() -> None:
    """2000 honest voters and 10 adversaries of each kind, 40 votes each (the same setup as
    docs/integrity.md). Bounds: honest voters flagged at most 2 * alpha (two sequential tests,
    each at most alpha by Ville; the burst rule cannot fire at the honest rate of one vote per
    two minutes); every side and burst adversary caught; at least 90% of the targeted and half
    of the fan adversaries' votes excluded. A fan of the second-best model is the hard case: it
    would win most of its battles anyway, so only its votes against model 0 say much."""
    rng = np.random.default_rng(5)
    thresholds = Thresholds(alpha=0.01)
    simulated = simulate_arena(
        rng,
        STRENGTHS,
        honest_voters=2000,
        mean_votes=10,
        adversaries={"targeted": 10, "fan": 10, "side": 10, "burst": 10},
        adversary_votes=40,
        pair=(0, 1),
    )
    outcomes, _ = injection_trial(simulated, 8, thresholds)
    honest = outcomes["honest"]
    assert honest.voters == 2000
    assert honest.flagged / honest.voters <= 2 * thresholds.alpha
    assert outcomes["side"].flagged == outcomes["burst"].flagged == 10
    assert outcomes["targeted"].votes_excluded / outcomes["targeted"].votes >= 0.9
    assert outcomes["fan"].votes_excluded / outcomes["fan"].votes >= 0.5


def test_a_voter_who_holds_most_votes_is_tested_against_the_others() -> None:
    """The consensus leaves a large voter out: otherwise an attacker with enough votes would
    *be* the consensus and agree with it."""
    rng = np.random.default_rng(0)
    honest_n, attack_n = 300, 600
    # Honest: model 0 beats model 1 70% of the time; the attacker always picks model 1.
    honest_o = np.where(rng.random(honest_n) < 0.7, 0, 1)
    voter = np.r_[np.arange(honest_n) % 100, np.full(attack_n, 999)]
    # The attacker's votes come on both sides (it always picks model 1), so the side test is
    # not what catches it.
    flip = np.r_[np.zeros(honest_n, bool), np.arange(attack_n) % 2 == 0]
    a, b = np.where(flip, 1, 0), np.where(flip, 0, 1)
    o = np.r_[honest_o, np.where(flip[honest_n:], 0, 1)]
    t = np.arange(a.size) * 1000.0
    consensus = cell_counts(a, b, o, 2)

    def flagged_after(loo_share: float) -> int | None:
        thresholds = Thresholds(alpha=0.01, loo_share=loo_share)
        results = detect_voters(
            voter, a, b, o, t, consensus=consensus, n_models=2, thresholds=thresholds
        )
        return next(r for r in results if r.voter == 999).disagreement_after

    left_out, counted_in = flagged_after(0.01), flagged_after(1.01)  # 1.01: never left out
    # Against the others (model 0 wins 70%) ten votes suffice; when its own votes make up the
    # consensus (model 1 wins 79%), only its never picking model 0 gives it away, much later.
    assert left_out is not None and left_out <= 10
    assert counted_in is not None and counted_in > 2 * left_out


def test_flagged_after_counts_every_vote_of_the_voter_ties_included() -> None:
    # A voter alternating "tie" and "always A", against a consensus where B is far stronger.
    n = 60
    o = np.where(np.arange(n) % 2 == 0, 2, 0)
    consensus = cell_counts(
        np.zeros(400, np.int64), np.ones(400, np.int64), np.where(np.arange(400) % 10 == 0, 0, 1), 2
    )
    results = detect_voters(
        np.zeros(n, np.int64),
        np.zeros(n, np.int64),
        np.ones(n, np.int64),
        o,
        np.arange(n) * 1000.0,
        consensus=consensus,
        n_models=2,
        thresholds=Thresholds(),
        in_consensus=np.zeros(n, bool),
    )
    (result,) = results
    assert result.n_decisive == n // 2
    assert result.disagreement_after is not None
    assert result.disagreement_after % 2 == 0  # decisive votes are the even-numbered ones


@pytest.mark.parametrize("alpha", [0.0, 1.0])
def test_thresholds_refuse_a_level_outside_zero_one(alpha: float) -> None:
    with pytest.raises(ValueError, match="alpha"):
        Thresholds(alpha=alpha)
