"""Shared fixtures for the ratings tests: simulated battles and the reference battle log."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from leaderboard.engine import ratings as R
from leaderboard.engine.ratings import Battles
from leaderboard.engine.simulation import simulate

REPO = Path(__file__).resolve().parents[2]
# Optimisers stop at gradient tolerances around 1e-8..1e-9; internal identities (relabelling,
# side swaps, groups fitted alone) hold to rounding.
EXACT_ATOL = 1e-9


def counts_of(battles: Battles) -> R.PairCounts:
    return R.aggregate_counts(battles.model_a, battles.model_b, battles.outcome, len(battles.names))


def fit(battles: Battles, **kw: float) -> np.ndarray:
    """The Bradley-Terry strengths of a battle list (raises when not identifiable)."""
    return R.fit_bradley_terry(counts_of(battles), **kw)


def refdata_dir() -> Path:
    """The GenAI-Arena reference data (``shared/refdata/genai-arena``), next to or in the repo."""
    candidates = [REPO / "shared" / "refdata", REPO.parent / "shared" / "refdata"]
    if os.environ.get("ARENA_REFDATA"):
        candidates.insert(0, Path(os.environ["ARENA_REFDATA"]))
    for base in candidates:
        if (base / "genai-arena" / "clean_battle_20240220.json").is_file():
            return base / "genai-arena"
    raise FileNotFoundError(f"reference data not found in {[str(c) for c in candidates]}")


@pytest.fixture
def simulated() -> Callable[..., Battles]:
    return simulate
