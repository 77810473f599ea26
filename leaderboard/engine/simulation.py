"""Simulated battles from known strengths: what the tests and the benchmarks fit and check against.

Here, in the engine, rather than in the tests, so that tests and benchmarks share it without
either importing the other.
"""

from __future__ import annotations

import numpy as np

from leaderboard.engine.pairs import Battles
from leaderboard.engine.style import style_features


def simulate(
    rng: np.random.Generator,
    strengths: np.ndarray,
    n_battles: int,
    *,
    tie_rate: float = 0.0,
    style: np.ndarray | None = None,
) -> Battles:
    """Battles between uniformly drawn distinct pairs, outcomes drawn from Bradley-Terry.

    A tie (drawn with probability ``tie_rate``) is a half win for each side, as the model assumes;
    with ``style`` (coefficients), per-side style counts are drawn and enter the log-odds through
    the standardised features.
    """
    n = strengths.size
    a = rng.integers(0, n, n_battles)
    b = rng.integers(0, n - 1, n_battles)
    b = b + (b >= a)
    logit = strengths[a] - strengths[b]
    style_a = style_b = None
    if style is not None:
        style_a = rng.poisson([300.0, 2.0, 4.0, 3.0], (n_battles, 4)).astype(np.float64)
        style_b = rng.poisson([300.0, 2.0, 4.0, 3.0], (n_battles, 4)).astype(np.float64)
        logit = logit + style_features(style_a, style_b) @ style
    win = rng.random(n_battles) < 1 / (1 + np.exp(-logit))
    outcome = np.where(win, 0, 1)
    tie = rng.random(n_battles) < tie_rate
    # A tie replaces a decisive result with probability tie_rate regardless of strengths, so the
    # simulated share of wins stays a Bradley-Terry probability only when tie_rate is 0; tests of
    # recovery use tie_rate=0, tests of agreement with peers use ties freely.
    outcome = np.where(tie, 2, outcome)
    names = tuple(f"model-{i:03d}" for i in range(n))
    return Battles(
        names, a, b, outcome.astype(np.int8), style_a=style_a, style_b=style_b,
        style_names=("answer_tokens", "headers", "lists", "bold") if style is not None else (),
    )  # fmt: skip
