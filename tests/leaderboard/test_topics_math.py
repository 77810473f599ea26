"""Topics and the prompt-conditioned ranking, without Django: encoder, clusters, weights, fit."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

from leaderboard.engine.conditioned import (
    conditioned_leaderboard,
    effective_size,
    similarity_weights,
)
from leaderboard.engine.pairs import Battles
from leaderboard.engine.ratings import compute_leaderboard
from leaderboard.engine.topic_simulation import make_design, make_prompt, recovery
from leaderboard.engine.topics import LocalEncoder, cluster_topics, nearest_topic, topic_terms

# Ratings from two fits of the same weighted likelihood agree to the fits' tolerance.
RATING_ATOL = 1e-6


@pytest.fixture(scope="module")
def design():  # type: ignore[no-untyped-def]
    return make_design(np.random.default_rng(7), per_topic=200)


def test_encoder_state_round_trips_through_plain_arrays(design) -> None:  # type: ignore[no-untyped-def]
    encoder = LocalEncoder.fit(design.prompts)
    again = LocalEncoder.from_arrays(encoder.to_arrays())
    probe = [*design.prompts[:20], "an unseen prompt", ""]
    np.testing.assert_allclose(again.transform(probe), encoder.transform(probe), atol=1e-6)
    assert again.version() == encoder.version()
    norms = np.linalg.norm(encoder.transform(design.prompts[:50]), axis=1)
    np.testing.assert_allclose(norms, 1.0, atol=1e-9)


def test_clusters_find_the_three_vocabularies_and_name_them_by_their_words(design) -> None:  # type: ignore[no-untyped-def]
    encoder = LocalEncoder.fit(design.prompts)
    vectors = encoder.transform(design.prompts)
    topics = cluster_topics(vectors, rng=np.random.default_rng(0))
    assert topics.k == 3
    assert adjusted_rand_score(design.topic, topics.labels) > 0.9
    terms = topic_terms(
        encoder.word.transform(design.prompts), topics.labels, topics.k, encoder.word_terms()
    )
    for t in range(3):
        truth = np.bincount(design.topic[topics.labels == t]).argmax()
        words = {w for term in terms[t] for w in term.split()}
        assert words and words <= set(design.vocabularies[truth]), (terms[t], truth)
    # A fresh prompt of each vocabulary lands in its topic.
    rng = np.random.default_rng(1)
    fresh = [make_prompt(rng, design.vocabularies[t]) for t in range(3)]
    found = nearest_topic(encoder.transform(fresh), topics.centroids)
    majority = [np.bincount(topics.labels[design.topic == t]).argmax() for t in range(3)]
    assert found.tolist() == majority


def test_too_few_distinct_prompts_make_one_topic() -> None:
    vectors = np.tile([[1.0, 0.0]], (5, 1))
    topics = cluster_topics(vectors, rng=np.random.default_rng(0))
    assert topics.k == 1 and topics.labels.tolist() == [0] * 5


def test_weights_favour_similar_prompts_and_kish_counts_them() -> None:
    vectors = np.array([[1.0, 0.0], [0.0, 1.0], [np.sqrt(0.5), np.sqrt(0.5)]])
    w = similarity_weights(vectors, np.array([1.0, 0.0]), bandwidth=0.5)
    assert w[0] == 1.0 and w[1] < w[2] < w[0]
    assert effective_size(np.ones(10)) == pytest.approx(10)
    assert effective_size(np.array([1.0, 0, 0, 0])) == pytest.approx(1)
    assert not similarity_weights(vectors, np.zeros(2)).any()
    with pytest.raises(ValueError, match="bandwidth"):
        similarity_weights(vectors, np.array([1.0, 0.0]), bandwidth=0)


def test_equal_weights_give_the_unweighted_sandwich_fit(simulated) -> None:  # type: ignore[no-untyped-def]
    battles = simulated(np.random.default_rng(3), np.array([0.0, 0.5, 1.0, 1.5]), 800)
    plain = compute_leaderboard(battles, ci="sandwich")
    for scale in (1.0, 0.01):
        got = conditioned_leaderboard(
            battles.names, battles.model_a, battles.model_b, battles.outcome.astype(np.int64),
            np.full(len(battles), scale), min_effective=10,
        )  # fmt: skip
        assert got.board is not None and got.effective == pytest.approx(800)
        for a, b in zip(got.board.rows, plain.rows, strict=True):
            assert a.model == b.model
            assert a.rating == pytest.approx(b.rating, abs=RATING_ATOL)
            assert a.lower == pytest.approx(b.lower, abs=RATING_ATOL)


def test_integer_weights_give_the_fit_of_repeated_battles(simulated) -> None:  # type: ignore[no-untyped-def]
    battles = simulated(np.random.default_rng(4), np.array([0.0, 0.7, 1.4]), 600)
    w = np.random.default_rng(5).integers(1, 4, len(battles)).astype(np.float64)
    got = conditioned_leaderboard(
        battles.names, battles.model_a, battles.model_b, battles.outcome.astype(np.int64), w,
        min_effective=10,
    )  # fmt: skip
    rep = np.repeat(np.arange(len(battles)), w.astype(np.int64))
    repeated = Battles(battles.names, battles.model_a[rep], battles.model_b[rep],
                       battles.outcome[rep])  # fmt: skip
    point = compute_leaderboard(repeated, ci="none")
    assert got.board is not None
    for a, b in zip(got.board.rows, point.rows, strict=True):
        assert a.rating == pytest.approx(b.rating, abs=RATING_ATOL)
    # The weighted sandwich counts each battle once (w^2 in the meat), so it is wider than the
    # sandwich of the repeated battles, which pretends they were independent.
    rep_sw = compute_leaderboard(repeated, ci="sandwich")
    width = {r.model: r.upper - r.lower for r in got.board.rows}
    assert all(width[r.model] > r.upper - r.lower for r in rep_sw.rows)


def test_below_the_minimum_effective_size_there_is_no_ranking() -> None:
    a, b, o = np.array([0, 1, 0]), np.array([1, 2, 2]), np.array([0, 1, 0])
    got = conditioned_leaderboard(("x", "y", "z"), a, b, o, np.ones(3), min_effective=200)
    assert got.board is None and got.effective == pytest.approx(3)


def test_conditioned_ranking_recovers_each_topics_order_and_covers_it() -> None:
    """Three topics, a different best model in each: the ranking conditioned on a prompt of a
    topic orders the models as that topic does far better than the global ranking, and its 95%
    intervals cover the topic-level truth about 95% of the time (60 redraws x 3 topics x 6)."""
    got = recovery(seed=2, per_topic=3000, rounds=60)
    assert got.tau_conditioned > 0.9
    assert got.tau_conditioned > got.tau_global + 0.5
    assert 0.93 <= got.coverage <= 0.97, got
    assert got.effective > 200
