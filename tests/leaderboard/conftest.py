"""Shared fixtures for the ratings tests: simulated battles and the reference battle log."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from leaderboard.engine.ratings import Battles

REPO = Path(__file__).resolve().parents[2]


def refdata_dir() -> Path:
    """The GenAI-Arena reference data (``shared/refdata/genai-arena``), next to or in the repo."""
    candidates = [REPO / "shared" / "refdata", REPO.parent / "shared" / "refdata"]
    if os.environ.get("ARENA_REFDATA"):
        candidates.insert(0, Path(os.environ["ARENA_REFDATA"]))
    for base in candidates:
        if (base / "genai-arena" / "clean_battle_20240220.json").is_file():
            return base / "genai-arena"
    raise FileNotFoundError(f"reference data not found in {[str(c) for c in candidates]}")


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
    from leaderboard.engine.style import style_features

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


@pytest.fixture
def simulated() -> Callable[..., Battles]:
    return simulate
