"""Snapshots: valid votes in the database -> stored leaderboards that the pages read."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
from django.test import Client
from django.utils import timezone

from arena.models import ArenaModel, Vote
from leaderboard.engine.ratings import compute_leaderboard
from leaderboard.pipeline import battles as battle_data
from leaderboard.pipeline.categories import Category, category_mask
from leaderboard.pipeline.snapshots import leaderboard_snapshot_create
from tests.factories import vote_build, votes_store

# The SQL-aggregated fit and the per-battle fit solve the same problem to the same tolerance.
RATING_ATOL = 1e-6
STRENGTHS = {"m0": 0.0, "m1": 0.4, "m2": 0.8, "m3": 1.2}
OUTCOMES = ["model_a", "model_b", "tie", "both_bad"]


@pytest.fixture
def votes(db: None) -> list[Vote]:
    """400 votes drawn from known strengths, with varied categories and style facts."""
    rng = np.random.default_rng(2024)
    models = [
        ArenaModel.objects.create(name=name, display_name=name.upper(), backend="local")
        for name in STRENGTHS
    ]
    strength = np.array(list(STRENGTHS.values()))
    now = timezone.now()
    made = []
    for k in range(400):
        i, j = rng.choice(len(models), size=2, replace=False)
        p = 1 / (1 + np.exp(strength[j] - strength[i]))
        u = rng.random()
        outcome = "tie" if u < 0.15 else ("model_a" if u < 0.15 + 0.85 * p else "model_b")
        made.append(
            vote_build(
                models[i],
                models[j],
                outcome,
                visitor_id=f"v{k % 37}",
                when=now - dt.timedelta(minutes=k),
                language="en" if k % 3 else "de",
                turns=1 + (k % 4 == 0),
                prompt_chars=50 + (k % 7) * 300,
                has_code=k % 5 == 0,
                tokens_a=int(rng.integers(10, 500)),
                tokens_b=int(rng.integers(10, 500)),
                style_a={"headers": int(rng.integers(0, 3)), "lists": int(rng.integers(0, 5))},
                style_b={"bold": int(rng.integers(0, 4))},
            )
        )
    return votes_store(made)


def test_snapshot_stores_every_category_with_rows_and_matrices(votes: list[Vote]) -> None:
    snapshot = leaderboard_snapshot_create()
    assert snapshot is not None
    assert snapshot.n_battles == 400
    assert set(snapshot.results) == {
        "overall", "english", "non_english", "coding", "multi_turn", "long_prompt", "no_ties",
    }  # fmt: skip
    overall = snapshot.results["overall"]
    assert [row["model"] for row in overall["rows"]] == ["m3", "m2", "m1", "m0"]
    assert all(row["lower"] <= row["rating"] <= row["upper"] for row in overall["rows"])
    assert {c["name"] for c in overall["style"]} == {"answer_tokens", "headers", "lists", "bold"}
    assert overall["matrices"]["models"] == ["m3", "m2", "m1", "m0"]
    assert sum(map(sum, overall["matrices"]["battles"])) == 2 * 400


def test_sql_aggregation_gives_the_per_battle_fit(votes: list[Vote]) -> None:
    names, index = battle_data.model_names()
    queryset = battle_data.valid_votes()
    aggregated = battle_data.battles_aggregated(queryset, names, index)
    per_battle = battle_data.battles_with_style(queryset, names, index)
    fit_a = compute_leaderboard(aggregated, ci="none")
    fit_b = compute_leaderboard(per_battle, ci="none")
    assert np.allclose(fit_a.theta, fit_b.theta, atol=RATING_ATOL)


@pytest.mark.parametrize(
    "category",
    [
        Category("english", equals={"language": "en"}),
        Category("non_english", equals={"is_english": False}),
        Category("coding", equals={"is_code": True}),
        Category("multi_turn", at_least={"turns": 2}),
        Category("short", at_most={"prompt_chars": 700}),
        Category("no_ties", exclude_ties=True),
    ],
)
def test_category_filter_in_sql_matches_the_array_mask(
    votes: list[Vote], category: Category
) -> None:
    """The database filter and the ratings engine's mask select the same battles."""
    ordered = sorted(votes, key=lambda v: v.id)
    columns = {
        "language": np.array([v.language for v in ordered]),
        "is_english": np.array([v.language == "en" for v in ordered]),
        "is_code": np.array([v.has_code for v in ordered]),
        "turns": np.array([v.turns for v in ordered]),
        "prompt_chars": np.array([v.prompt_chars for v in ordered]),
    }
    names, index = battle_data.model_names()
    arrays = battle_data.battles_with_style(battle_data.valid_votes(), names, index)
    arrays = type(arrays)(arrays.names, arrays.model_a, arrays.model_b, arrays.outcome,
                          columns=columns)  # fmt: skip
    expected = {v.id for v, keep in zip(ordered, category_mask(arrays, category), strict=True)
                if keep}  # fmt: skip
    selected = set(
        battle_data.valid_votes()
        .filter(battle_data.category_filter(category))
        .values_list("id", flat=True)
    )
    assert selected == expected
    assert 0 < len(selected) < len(votes)


def test_refresh_does_nothing_until_a_vote_changes(votes: list[Vote]) -> None:
    first = leaderboard_snapshot_create()
    assert first is not None
    assert leaderboard_snapshot_create() is None
    Vote.objects.filter(id=votes[0].id).update(is_valid=False, invalid_reason="staff")
    second = leaderboard_snapshot_create()
    assert second is not None and second.n_battles == 399
    assert second.battle_hash != first.battle_hash
    assert leaderboard_snapshot_create(force=True) is not None


def test_an_empty_category_is_stored_empty(votes: list[Vote]) -> None:
    Vote.objects.filter(has_code=True).update(is_valid=False)
    snapshot = leaderboard_snapshot_create()
    assert snapshot is not None
    assert snapshot.results["coding"]["n_battles"] == 0
    assert snapshot.results["coding"]["rows"] == []


def test_leaderboard_page_and_api_read_the_snapshot(votes: list[Vote], client: Client) -> None:
    assert client.get("/api/leaderboard").status_code == 404  # no snapshot yet
    assert b"No leaderboard yet" in client.get("/leaderboard").content
    leaderboard_snapshot_create()
    page = client.get("/leaderboard")
    assert page.status_code == 200 and b"M3" in page.content
    data = client.get("/api/leaderboard?category=multi_turn&style_control=1").json()
    assert data["meta"]["category"] == "multi_turn" and data["meta"]["style_control"] is True
    assert {"rank", "model", "rating", "lower", "upper", "battles", "organization"} <= set(
        data["rows"][0]
    )
    unknown = client.get("/api/leaderboard?category=poetry")
    assert unknown.status_code == 404
    assert "valid categories: overall, english" in unknown.json()["error"]
    assert client.get("/leaderboard?category=poetry").status_code == 404
    csv_reply = client.get("/api/leaderboard.csv")
    assert csv_reply["Content-Type"].startswith("text/csv")
    assert csv_reply.content.decode().splitlines()[0].startswith("rank,model,display_name,rating")


def test_leaderboard_page_queries_are_bounded(votes: list[Vote], client: Client,
                                              django_assert_max_num_queries) -> None:  # fmt: skip
    leaderboard_snapshot_create()
    # Session, snapshot, the registry join, the demo banner and the page cache's key (snapshot
    # and registry stamp, leaderboard/page_cache.py): independent of the vote count.
    with django_assert_max_num_queries(6):
        assert client.get("/leaderboard").status_code == 200


# --- what the pages read besides the ratings (languages, model details, history) -----------


def test_languages_with_enough_votes_are_stored_as_their_own_categories(
    votes: list[Vote],
) -> None:
    snapshot = leaderboard_snapshot_create()
    assert snapshot is not None
    assert list(snapshot.language_results) == ["lang:en", "lang:de"]  # most voted first
    assert (
        snapshot.language_results["lang:en"]["n_battles"]
        == snapshot.results["english"]["n_battles"]
    )
    assert snapshot.language_results["lang:de"]["n_battles"] == sum(
        v.language == "de" for v in votes
    )


def test_details_count_each_models_battles_dates_and_head_to_head(votes: list[Vote]) -> None:
    Vote.objects.filter(id__in=[votes[0].id, votes[1].id]).update(
        is_valid=False, invalid_reason="identity leak"
    )
    snapshot = leaderboard_snapshot_create()
    assert snapshot is not None
    valid = votes[2:]
    assert snapshot.details["votes"] == {
        "valid": 398, "excluded": {"identity leak": 2}, "downsampled": 0, "excluded_voters": 0,
    }  # fmt: skip
    m0 = [v for v in valid if "m0" in (v.model_a.name, v.model_b.name)]
    stats = snapshot.details["models"]["m0"]
    assert stats["battles"] == len(m0)
    assert stats["share"] == pytest.approx(len(m0) / 398, abs=1e-6)
    assert sum(s["share"] for s in snapshot.details["models"].values()) == pytest.approx(2)
    assert stats["first_battle"] == min(v.created_at for v in m0).isoformat()
    h2h = snapshot.details["head_to_head"]
    names = h2h["models"]
    for i, j, wins_i, wins_j, ties in h2h["pairs"]:
        pair = [v for v in valid if {v.model_a.name, v.model_b.name} == {names[i], names[j]}]
        won_by_i = sum(
            (v.outcome == "model_a" and v.model_a.name == names[i])
            or (v.outcome == "model_b" and v.model_b.name == names[i])
            for v in pair
        )
        assert (wins_i, wins_i + wins_j + ties) == (won_by_i, len(pair))


def test_history_keeps_the_overall_ratings_compactly(votes: list[Vote]) -> None:
    snapshot = leaderboard_snapshot_create()
    assert snapshot is not None
    overall = snapshot.results["overall"]["rows"]
    assert snapshot.history["overall"] == [
        [r["model"], r["rating"], r["lower"], r["upper"]] for r in overall
    ]


def test_style_features_that_never_differ_make_style_control_not_available(
    votes: list[Vote],
) -> None:
    # Every answer equally styled: no style feature differs, so style control has nothing to
    # measure and says so, with the reason, instead of numbers (or a singular fit).
    Vote.objects.update(tokens_a=100, tokens_b=100, style_a={}, style_b={})
    snapshot = leaderboard_snapshot_create()
    assert snapshot is not None
    overall = snapshot.results["overall"]
    assert overall["style_error"] == (
        "style control not available: no style feature differs between the two answers "
        "in at least 30 battles"
    )
    assert "style_rows" not in overall and len(overall["rows"]) == 4
