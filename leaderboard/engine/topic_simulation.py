"""Simulated arenas whose true strengths depend on the prompt's topic (tests and benchmarks).

Three topics with their own vocabularies and a shared set of filler words; the best model differs
between topics. The prompt-conditioned ranking (:mod:`leaderboard.engine.conditioned`) on the local
encoder's vectors (:mod:`leaderboard.engine.topics`) should recover each topic's order better than
the global ranking, and its intervals should cover the topic-level truth.

The topic-level truth for a query of topic t is the strength vector that generated the battles of
topic t, anchored as the fit anchors its estimate: centred at the mean weighted by each model's
kernel-weighted battles (:mod:`leaderboard.engine.intervals`). Coverage is over redraws of the
outcomes with the prompts and pairs fixed (the design), so the weights are the same in every round.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import kendalltau

from leaderboard.engine.conditioned import BANDWIDTH, conditioned_leaderboard, similarity_weights
from leaderboard.engine.intervals import anchor_weights, centre_strengths
from leaderboard.engine.pairs import Battles, Float, Int, aggregate_counts
from leaderboard.engine.ratings import Row, compute_leaderboard, theta_to_rating
from leaderboard.engine.topics import LocalEncoder

FILLER = ("please", "explain", "how", "write", "about", "short", "give", "me", "what", "why")
# Per topic, a permutation of the base strengths: a different best model in each topic.
BASE = np.array([1.0, 0.6, 0.2, -0.2, -0.6, -1.0])
ORDERS = ((0, 1, 2, 3, 4, 5), (5, 3, 1, 0, 2, 4), (2, 5, 4, 1, 3, 0))


def topic_strengths() -> Float:
    """(3 topics, 6 models): model ``ORDERS[t][r]`` gets the r-th base strength in topic t."""
    out = np.zeros((len(ORDERS), BASE.size))
    for t, order in enumerate(ORDERS):
        out[t, list(order)] = BASE
    return out


def _vocabulary(rng: np.random.Generator, size: int) -> list[str]:
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    return ["".join(rng.choice(letters, size=int(rng.integers(5, 9)))) for _ in range(size)]


def make_prompt(rng: np.random.Generator, vocab: list[str]) -> str:
    n = int(rng.integers(6, 11))
    words = [
        FILLER[int(rng.integers(len(FILLER)))]
        if rng.random() < 0.3
        else vocab[int(rng.integers(len(vocab)))]
        for _ in range(n)
    ]
    return " ".join(words)


@dataclass(frozen=True)
class Design:
    """Prompts, their topics and the pairs that met; outcomes are drawn by :func:`draw_outcomes`."""

    names: tuple[str, ...]
    prompts: list[str]
    topic: Int
    model_a: Int
    model_b: Int
    vocabularies: list[list[str]]
    strengths: Float


def make_design(rng: np.random.Generator, *, per_topic: int) -> Design:
    strengths = topic_strengths()
    n_topics, n_models = strengths.shape
    vocabularies = [_vocabulary(rng, 40) for _ in range(n_topics)]
    topic = np.repeat(np.arange(n_topics), per_topic).astype(np.int64)
    prompts = [make_prompt(rng, vocabularies[t]) for t in topic]
    a = rng.integers(0, n_models, topic.size)
    b = (a + rng.integers(1, n_models, topic.size)) % n_models
    names = tuple(f"model-{m}" for m in range(n_models))
    return Design(names, prompts, topic, a.astype(np.int64), b.astype(np.int64), vocabularies,
                  strengths)  # fmt: skip


def draw_outcomes(rng: np.random.Generator, design: Design) -> Int:
    """0 (model_a won) or 1 (model_b won) with the Bradley-Terry odds of the battle's topic."""
    s = design.strengths[design.topic]
    rows = np.arange(design.topic.size)
    p = 1 / (1 + np.exp(-(s[rows, design.model_a] - s[rows, design.model_b])))
    out: Int = (rng.random(p.size) >= p).astype(np.int64)
    return out


@dataclass(frozen=True)
class Recovery:
    """Mean Kendall tau against the topic's true order (conditioned vs global), interval
    coverage of the topic-level truth, mean effective size, and the largest mean bias (rating
    points) of a conditioned estimate over the rounds."""

    tau_conditioned: float
    tau_global: float
    coverage: float
    n_intervals: int
    effective: float
    max_bias: float


def _ratings(board_rows: tuple[Row, ...], names: tuple[str, ...], attr: str) -> Float:
    by_name = {r.model: getattr(r, attr) for r in board_rows}
    return np.array([by_name[n] for n in names], dtype=np.float64)


def recovery(
    *,
    seed: int,
    per_topic: int,
    rounds: int,
    bandwidth: float = BANDWIDTH,
    min_effective: float = 50,
) -> Recovery:
    """Fit the encoder once on the design's prompts, then over ``rounds`` redraws of outcomes
    fit the global ranking and, for one fresh query prompt per topic, the conditioned ranking."""
    rng = np.random.default_rng(seed)
    design = make_design(rng, per_topic=per_topic)
    encoder = LocalEncoder.fit(design.prompts, seed=seed)
    vectors = encoder.transform(design.prompts)
    n_topics = design.strengths.shape[0]
    queries = [make_prompt(rng, design.vocabularies[t]) for t in range(n_topics)]
    weights = [similarity_weights(vectors, q, bandwidth=bandwidth)
               for q in encoder.transform(queries)]  # fmt: skip
    truths = []
    for t, w in enumerate(weights):
        keep = w > 0
        counts = aggregate_counts(
            design.model_a[keep], design.model_b[keep], np.zeros(int(keep.sum()), np.int64),
            len(design.names), weight=w[keep] / w[keep].mean(),
        )  # fmt: skip
        labels = np.zeros(len(design.names), dtype=np.int64)
        truths.append(theta_to_rating(centre_strengths(design.strengths[t], labels,
                                                       anchor_weights(counts))))  # fmt: skip
    taus_c, taus_g, covered, total, effs = [], [], 0, 0, []
    errors = np.zeros((n_topics, len(design.names)))
    for _ in range(rounds):
        outcome = draw_outcomes(rng, design)
        glob = compute_leaderboard(
            Battles(design.names, design.model_a, design.model_b, outcome), ci="none"
        )
        g = _ratings(glob.rows, design.names, "rating")
        for t, w in enumerate(weights):
            res = conditioned_leaderboard(
                design.names, design.model_a, design.model_b, outcome, w,
                min_effective=min_effective,
            )  # fmt: skip
            assert res.board is not None, "too few similar battles in the simulation"
            effs.append(res.effective)
            est = _ratings(res.board.rows, design.names, "rating")
            lo = _ratings(res.board.rows, design.names, "lower")
            up = _ratings(res.board.rows, design.names, "upper")
            truth = truths[t]
            taus_c.append(float(kendalltau(est, truth).statistic))
            taus_g.append(float(kendalltau(g, truth).statistic))
            covered += int(np.sum((lo <= truth) & (truth <= up)))
            total += truth.size
            errors[t] += est - truth
    return Recovery(
        float(np.mean(taus_c)), float(np.mean(taus_g)), covered / max(total, 1), total,
        float(np.mean(effs)), float(np.max(np.abs(errors / rounds))),
    )  # fmt: skip
