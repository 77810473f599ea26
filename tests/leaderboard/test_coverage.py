"""Coverage as a test: 95% intervals cover the truth 93-97% of the time in simulated arenas.

Each case (``leaderboard.engine.coverage.CASES``: no ties, 15% ties, one model at 1/10 of the
battles, one at about 40 battles, style control with a length effect) runs a few hundred seeded
arenas with strengths drawn afresh each time. "Covers" compares the interval with the true strength
centred by the same anchor as the ratings (the battle-weighted mean of that arena).

Monte-Carlo error decides what is asserted. The models of an arena other than a thin one are
exchangeable (same draw of strengths, same share of battles), so each has the same true coverage
and their pooled share estimates it with a standard error of 0.4-0.6 points here: that share
must lie in 93-97%. A single model's share rests on the arenas alone (standard error 1.3-1.8
points at these sizes), so each model, the thin one included, must lie within 95% +/- 3.5
standard errors; ``benchmarks/coverage.py`` runs the long version (per-model figures in
docs/benchmarks.md).
"""

from __future__ import annotations

import numpy as np
import pytest

from leaderboard.engine.coverage import CASES, Case, coverage

ROUNDS = 100  # percentile bounds at (B + 1) * alpha / 2 keep 95% with few rounds
ARENAS = {"sandwich": 300, "bootstrap": 200}
STYLE_BOOTSTRAP_ARENAS = 150  # a style bootstrap round refits over battles, not pair counts
POOLED = (0.93, 0.97)
SINGLE_SE = 3.5


def _check(case: Case, ci: str, arenas: int, seed: int) -> None:
    result = coverage(case, ci=ci, arenas=arenas, seed=seed, rounds=ROUNDS)
    per_model = result.per_model
    thin = case.share is not None
    exchangeable = per_model[1:] if thin else per_model
    pooled = float(exchangeable.mean())
    assert POOLED[0] <= pooled <= POOLED[1], (case.name, ci, pooled, per_model)
    band = SINGLE_SE * result.standard_error()
    assert np.all(np.abs(per_model - 0.95) <= band), (case.name, ci, band, per_model)
    # Nearly every arena has one rateable group; an arena without one is redrawn and counted.
    assert result.skipped <= arenas // 50


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_sandwich_intervals_cover_the_truth(case: Case) -> None:
    _check(case, "sandwich", ARENAS["sandwich"], seed=CASES.index(case))


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bootstrap_intervals_cover_the_truth(case: Case) -> None:
    arenas = STYLE_BOOTSTRAP_ARENAS if case.style is not None else ARENAS["bootstrap"]
    _check(case, "bootstrap", arenas, seed=100 + CASES.index(case))
