"""Simulated arenas with known strengths, and how often the intervals cover them.

Shared by the coverage test (``tests/leaderboard/test_coverage.py``) and the benchmark
(``benchmarks/coverage.py``); pure numpy, randomness only from the passed generator.

What "covers the truth" means: a rating is a strength minus the group's anchor, the battle-weighted
mean strength (:mod:`leaderboard.engine.intervals`). So the true strengths are centred with the same
weights (each model's battles in that arena) before they are compared with the interval.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy.special import expit

from arena.facts import STYLE_NAMES
from leaderboard.engine.intervals import anchor_weights, centre_strengths
from leaderboard.engine.pairs import Battles, Float, aggregate_counts
from leaderboard.engine.ratings import compute_leaderboard
from leaderboard.engine.style import style_features

_STYLE_MEANS = (300.0, 2.0, 4.0, 3.0)


@dataclass(frozen=True)
class Case:
    """One kind of arena: models, battles, ties, how often each model is drawn, a style effect."""

    name: str
    n_models: int = 10
    n_battles: int = 2000
    tie_rate: float = 0.0
    # Relative chance of each model to be drawn into a battle (None: all equal).
    share: tuple[float, ...] | None = None
    # Log-odds per standard deviation of each style feature (None: no style, plain fit).
    style: tuple[float, ...] | None = None
    spread: float = 0.5  # standard deviation of the true strengths


def simulate_arena(rng: np.random.Generator, case: Case) -> tuple[Battles, Float]:
    """Battles of one arena and its true strengths.

    Each battle's expected score (win 1, tie 1/2) for side a is ``sigmoid(theta_a - theta_b +
    style effect)``, as the model with ties as half wins assumes: a tie has probability
    ``tie_rate`` and side a wins with ``p - tie_rate / 2``.
    """
    n = case.n_models
    truth = rng.normal(0.0, case.spread, n)
    share = np.ones(n) if case.share is None else np.asarray(case.share, dtype=np.float64)
    share = share / share.sum()
    a = rng.choice(n, case.n_battles, p=share)
    b = rng.choice(n, case.n_battles, p=share)
    same = a == b
    while same.any():
        b[same] = rng.choice(n, int(same.sum()), p=share)
        same = a == b
    logit = truth[a] - truth[b]
    style_a = style_b = None
    if case.style is not None:
        style_a = rng.poisson(_STYLE_MEANS, (case.n_battles, 4)).astype(np.float64)
        style_b = rng.poisson(_STYLE_MEANS, (case.n_battles, 4)).astype(np.float64)
        logit = logit + style_features(style_a, style_b) @ np.asarray(case.style)
    p = expit(logit)
    half = case.tie_rate / 2
    u = rng.random(case.n_battles)
    win_a = np.clip(p - half, 0.0, 1.0)
    outcome = np.where(u < win_a, 0, np.where(u < win_a + case.tie_rate, 2, 1)).astype(np.int8)
    names = tuple(f"m{k:02d}" for k in range(n))
    battles = Battles(
        names, a, b, outcome, style_a=style_a, style_b=style_b,
        style_names=STYLE_NAMES if case.style is not None else (),
    )  # fmt: skip
    return battles, truth


def arena_coverage(
    rng: np.random.Generator, case: Case, *, ci: str, rounds: int = 200, confidence: float = 0.95
) -> NDArray[np.bool_] | None:
    """Which models' intervals covered their centred true strength in one simulated arena.

    Returns None when not every model ended up in one rateable group (then there is no single
    anchor to compare with); callers count such arenas.
    """
    battles, truth = simulate_arena(rng, case)
    board = compute_leaderboard(
        battles, ci=ci, rounds=rounds, confidence=confidence, rng=rng,
        style_control=case.style is not None, workers=1,
    )  # fmt: skip
    if any(r.group != 1 for r in board.rows) or len(board.rows) != case.n_models:
        return None
    counts = aggregate_counts(battles.model_a, battles.model_b, battles.outcome, case.n_models)
    centred = centre_strengths(
        truth, np.zeros(case.n_models, dtype=np.int64), anchor_weights(counts)
    )
    true_rating = 1000.0 + 400.0 / np.log(10.0) * centred
    by_name = {r.model: r for r in board.rows}
    lower = np.array([by_name[m].lower for m in battles.names])
    upper = np.array([by_name[m].upper for m in battles.names])
    covered: NDArray[np.bool_] = (lower <= true_rating) & (true_rating <= upper)
    return covered


@dataclass(frozen=True)
class Coverage:
    """Per-model share of arenas whose interval covered the truth."""

    case: str
    ci: str
    arenas: int
    skipped: int
    per_model: Float

    def standard_error(self) -> float:
        """Monte-Carlo standard error of one model's coverage at 95%."""
        return float(np.sqrt(0.95 * 0.05 / max(self.arenas, 1)))


def coverage(
    case: Case, *, ci: str, arenas: int, seed: int, rounds: int = 200, confidence: float = 0.95
) -> Coverage:
    """Run ``arenas`` simulated arenas of ``case`` and count per-model coverage."""
    rng = np.random.default_rng(seed)
    hits = np.zeros(case.n_models)
    done = skipped = 0
    while done < arenas:
        covered = arena_coverage(rng, case, ci=ci, rounds=rounds, confidence=confidence)
        if covered is None:
            skipped += 1
            continue
        hits += covered
        done += 1
    return Coverage(case.name, ci, arenas, skipped, hits / arenas)


# A model drawn s times as often as each of 9 others takes part in about s times their battles;
# in 2,000 battles, s = 0.09 gives it about 40.
CASES = (
    Case("no ties"),
    Case("15% ties", tie_rate=0.15),
    Case("one model at 1/10 of the battles", n_battles=4000, share=(0.1,) + (1.0,) * 9),
    Case("one model at ~40 battles", share=(0.09,) + (1.0,) * 9),
    Case("style control, length effect", n_battles=1500, style=(0.4, 0.0, 0.0, 0.0)),
)
