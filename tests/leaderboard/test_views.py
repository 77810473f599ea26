"""Leaderboard pages and API: what people and scripts see, read from the stored snapshot."""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
from django.template.defaultfilters import floatformat
from django.test import Client
from django.utils import timezone

from arena.models import ArenaModel, Vote
from leaderboard.engine.simulation import simulate
from leaderboard.models import LeaderboardSnapshot
from leaderboard.pages import selectors
from leaderboard.pipeline.snapshots import category_result, leaderboard_snapshot_create
from tests.factories import vote_build, votes_store

STRENGTHS = {"alpha": 1.2, "bravo": 0.8, "charlie": 0.4, "delta": 0.0, "retired": 0.6}
STABLE_ROW_FIELDS = {
    "rank", "model", "display_name", "rating", "lower", "upper", "battles", "organization",
    "license", "enabled", "rank_plain", "rank_style_control", "ci_plus", "ci_minus", "note",
    "deprecated", "status", "provisional", "group",
}  # fmt: skip


@pytest.fixture(autouse=True)
def fresh_cache(settings: Any) -> Iterator[None]:
    # Test databases reuse snapshot ids; the per-process cache must not outlive a test.
    settings.ARENA_LEADERBOARD_ROUNDS = 20
    selectors.payload_cache_clear()
    yield
    selectors.payload_cache_clear()


def model(name: str, **extra: Any) -> ArenaModel:
    return ArenaModel.objects.create(
        name=name, display_name=name.title(), backend="local", organization="Org " + name[0],
        license="MIT", **extra,
    )  # fmt: skip


def style(rng: np.random.Generator) -> dict[str, int]:
    return {key: int(rng.integers(0, 4)) for key in ("headers", "lists", "bold")}


def add_votes(
    models: dict[str, ArenaModel],
    count: int,
    *,
    rng: np.random.Generator,
    pairs: list[tuple[str, str]] | None = None,
    **fields: Any,
) -> list[Vote]:
    """`count` votes between random pairs (or the given pairs), outcomes from STRENGTHS."""
    names = list(models)
    now = timezone.now()
    made = []
    for k in range(count):
        a, b = pairs[k % len(pairs)] if pairs else rng.choice(names, size=2, replace=False)
        p = 1 / (1 + np.exp(STRENGTHS.get(b, 0.0) - STRENGTHS.get(a, 0.0)))
        u = rng.random()
        outcome = "tie" if u < 0.1 else ("model_a" if u < 0.1 + 0.9 * p else "model_b")
        made.append(
            vote_build(
                models[a], models[b], outcome, visitor_id=f"v{k % 17}", when=now,
                language=fields.get("language", "en" if k % 3 else "de"),
                prompt_chars=100, has_code=fields.get("has_code", False),
                tokens_a=int(rng.integers(10, 400)), tokens_b=int(rng.integers(10, 400)),
                style_a=style(rng), style_b=style(rng),
                created_at=now - dt.timedelta(minutes=count - k),
                is_valid=fields.get("is_valid", True),
                invalid_reason=fields.get("invalid_reason", ""),
            )
        )  # fmt: skip
    return votes_store(made)


@pytest.fixture
def arena(db: None) -> dict[str, ArenaModel]:
    """Four models with plenty of votes, a retired one, a newcomer with few votes, a few coding
    votes, French below the language threshold, and excluded votes with their reasons."""
    rng = np.random.default_rng(7)
    models = {name: model(name) for name in STRENGTHS if name != "retired"}
    models["retired"] = model("retired", enabled=False)
    add_votes(models, 420, rng=rng)
    models["newbie"] = model("newbie")
    add_votes(models, 9, rng=rng, pairs=[("newbie", "alpha"), ("bravo", "newbie")])
    veterans = {name: m for name, m in models.items() if name != "newbie"}
    add_votes(veterans, 12, rng=rng, has_code=True, language="fr")
    add_votes(veterans, 5, rng=rng, is_valid=False, invalid_reason="identity leak")
    add_votes(veterans, 2, rng=rng, is_valid=False, invalid_reason="moderation flag")
    assert leaderboard_snapshot_create() is not None
    return models


def rows_of(client: Client, query: str = "") -> list[dict[str, Any]]:
    reply = client.get(f"/api/leaderboard{query}")
    assert reply.status_code == 200
    return reply.json()["rows"]  # type: ignore[no-any-return]


# --- empty states ---------------------------------------------------------------------------


def test_before_any_snapshot_the_page_explains_and_the_api_is_404(db: None, client: Client) -> None:
    page = client.get("/leaderboard")
    assert page.status_code == 200 and b"No leaderboard yet" in page.content
    for url in ("/api/leaderboard", "/api/leaderboard.csv"):
        reply = client.get(url)
        assert reply.status_code == 404 and "No leaderboard yet" in reply.json()["error"]


def test_one_model_without_votes_shows_empty_states_not_numbers(db: None, client: Client) -> None:
    model("solo")
    assert leaderboard_snapshot_create(force=True) is not None
    page = client.get("/leaderboard").content.decode()
    # No plot is drawn from no data (the sampling section's bars are empty SVGs, not plots).
    assert "No votes in Overall yet" in page and 'class="plot"' not in page
    assert rows_of(client) == []
    card = client.get("/leaderboard/models/solo")
    assert card.status_code == 200 and b"No votes for this model yet" in card.content
    data = client.get("/api/models/solo").json()
    assert data["battles"] == 0 and data["head_to_head"] == [] and data["first_battle"] is None


def test_a_model_card_before_any_snapshot_says_no_votes_yet(db: None, client: Client) -> None:
    model("solo")
    assert b"No votes for this model yet" in client.get("/leaderboard/models/solo").content
    assert client.get("/api/models/solo").json()["categories"] == []


# --- the table ------------------------------------------------------------------------------


def test_page_header_counts_models_votes_and_shows_the_time(arena: Any, client: Client) -> None:
    page = client.get("/leaderboard").content.decode()
    # The retired model is hidden by default: alpha..delta and the newcomer remain.
    assert '<dd id="stat-models">5</dd>' in page
    assert '<dd id="stat-votes">441</dd>' in page
    assert "UTC</time>" in page


def test_rows_are_best_first_with_rank_score_interval_and_registry_facts(
    arena: Any, client: Client
) -> None:
    rows = rows_of(client, "?show_deprecated=1")
    rated = [r for r in rows if r["status"] == "rated"]
    assert rated[0]["model"] == "alpha"
    assert [r["rating"] for r in rated] == sorted((r["rating"] for r in rated), reverse=True)
    assert all(r["lower"] <= r["rating"] <= r["upper"] for r in rated)
    assert rated[0]["rank"] == 1 and rated[0]["organization"] == "Org a"
    assert all(r["rank_style_control"] is not None for r in rated)
    page = client.get("/leaderboard").content.decode()
    row = page.split('data-model="alpha"')[1].split("</tr>")[0]
    assert '<td class="rank rank-1" data-value="1">1</td>' in row
    assert f">{floatformat(rated[0]['rating'], 0)}</td>" in row
    plus, minus = floatformat(rated[0]["ci_plus"], 0), floatformat(rated[0]["ci_minus"], 0)
    assert f"+{plus} / \N{MINUS SIGN}{minus}" in row
    assert "Alpha</a>" in row and "MIT" in row


def test_a_model_with_few_votes_is_provisional_not_a_number(arena: Any, client: Client) -> None:
    newbie = next(r for r in rows_of(client) if r["model"] == "newbie")
    assert newbie["battles"] == 9 and newbie["status"] == "provisional"
    page = client.get("/leaderboard").content.decode()
    row = page.split('data-model="newbie"')[1].split("</tr>")[0]
    assert "provisional" in row and "not enough votes" in row
    assert str(round(newbie["rating"])) not in row
    # Listed apart from the ranked table, without a rank.
    assert 'data-model="newbie"' not in page.split('id="board"')[1].split("</table>")[0]
    assert 'data-model="newbie"' in page.split('id="not-rated"')[1]


def test_a_category_with_too_few_votes_says_so(arena: Any, client: Client) -> None:
    page = client.get("/leaderboard?category=coding").content.decode()
    assert 'id="too-few"' in page and "Not enough votes in Coding yet" in page
    assert 'id="board"' not in page and 'id="not-rated"' in page  # no ranked table at all
    assert 'class="rank rank-' not in page  # no rank shown for any row
    assert all(r["provisional"] for r in rows_of(client, "?category=coding"))


def test_languages_with_enough_votes_become_categories(arena: Any, client: Client) -> None:
    categories = client.get("/api/leaderboard").json()["meta"]["categories"]
    assert categories[:3] == ["overall", "english", "non_english"]
    assert "lang:en" in categories and "lang:de" in categories
    assert "lang:fr" not in categories  # 12 votes, under the threshold of 30
    page = client.get("/leaderboard?category=lang:de").content.decode()
    assert '<option value="lang:de" selected>Language: de</option>' in page


def test_style_control_ranks_by_the_style_fit_and_shows_the_plain_rank(
    arena: Any, client: Client
) -> None:
    plain = rows_of(client)
    styled = rows_of(client, "?style_control=1")
    snapshot = LeaderboardSnapshot.objects.latest()
    style_rows = {r["model"]: r for r in snapshot.results["overall"]["style_rows"]}
    for row in styled:
        assert row["rating"] == style_rows[row["model"]]["rating"]
        assert row["rank_plain"] == next(p["rank"] for p in plain if p["model"] == row["model"])
    page = client.get("/leaderboard?style_control=1").content.decode()
    assert "Plain rank</button>" in page and 'id="style-control" checked' in page
    assert "Style ctrl. rank</button>" in client.get("/leaderboard").content.decode()


def test_deprecated_models_are_hidden_behind_a_toggle(arena: Any, client: Client) -> None:
    page = client.get("/leaderboard").content.decode()
    assert 'data-model="retired"' not in page and "(1 hidden)" in page
    shown = client.get("/leaderboard?show_deprecated=1").content.decode()
    assert 'data-model="retired"' in shown and ">deprecated</span>" in shown
    ArenaModel.objects.filter(name="alpha").update(in_registry=False)
    assert 'data-model="alpha"' not in client.get("/leaderboard").content.decode()
    # The API keeps every row and says which are deprecated.
    flags = {r["model"]: r["deprecated"] for r in rows_of(client)}
    assert flags["retired"] and flags["alpha"] and not flags["bravo"]


def test_unknown_category_is_404_with_the_valid_ones(arena: Any, client: Client) -> None:
    for url in ("/api/leaderboard?category=poetry", "/api/leaderboard.csv?category=poetry"):
        reply = client.get(url)
        assert reply.status_code == 404
        assert "valid categories: overall, english, non_english" in reply.json()["error"]
        assert "lang:de" in reply.json()["error"]
    page = client.get("/leaderboard?category=poetry")
    assert page.status_code == 404 and b"valid categories" in page.content


def test_a_language_without_its_votes_yet_is_a_404_that_says_when_it_comes(
    arena: Any, client: Client
) -> None:
    # The README's `category=lang:<tag>` example on a fresh demo: a clear JSON error, never a 500.
    for url in ("/api/leaderboard?category=lang:xx", "/api/leaderboard.csv?category=lang:xx"):
        reply = client.get(url)
        assert reply.status_code == 404
        error = reply.json()["error"]
        assert "No category 'lang:xx' yet" in error and "30 valid votes" in error
        assert "valid categories: overall" in error
    page = client.get("/leaderboard?category=lang:xx")
    assert page.status_code == 404 and b"30 valid votes" in page.content


def test_the_table_has_sortable_columns_and_links_to_model_cards(
    arena: Any, client: Client
) -> None:
    page = client.get("/leaderboard").content.decode()
    assert 'id="board" data-sortable' in page
    assert page.count('<button type="button">') >= 6
    assert 'href="/leaderboard/models/alpha"' in page


# --- plots and transparency -----------------------------------------------------------------


def test_the_page_draws_the_ratings_and_three_matrices_as_svg(arena: Any, client: Client) -> None:
    page = client.get("/leaderboard").content.decode()
    for anchor in ('id="plot-ratings"', 'id="panel-win"', 'id="panel-predicted"',
                   'id="panel-battles"'):  # fmt: skip
        section = page.split(anchor)[1]
        assert section.index("<svg") < section.index("</svg>")
    assert "The history appears once two snapshots" in page


def test_rating_history_reads_past_snapshots(arena: Any, client: Client) -> None:
    first = Vote.objects.filter(model_a__name="delta").values_list("id", flat=True)[:3]
    Vote.objects.filter(id__in=list(first)).update(is_valid=False)
    assert leaderboard_snapshot_create() is not None
    page = client.get("/leaderboard").content.decode()
    history = page.split('id="plot-history"')[1].split("</div>")[0]
    assert "<polyline" in history and "Alpha" in history


def test_transparency_lists_method_filters_excluded_votes_and_sampling(
    arena: Any, client: Client
) -> None:
    page = client.get("/leaderboard").content.decode()
    how = page.split('id="how"')[1]
    assert "Bradley-Terry" in how and "bootstrap (20 rounds" in how
    assert "<td>coding</td><td>is_code = True</td>" in how
    assert "<td>no_ties</td><td>ties and both-bad votes left out</td>" in how
    excluded = how.split('id="excluded"')[1].split("</table>")[0]
    assert '<td>identity leak</td><td class="num">5</td>' in excluded
    assert '<td>moderation flag</td><td class="num">2</td>' in excluded
    sampling = how.split('id="sampling"')[1].split("</table>")[0]
    # Five models in the pool with equal weights: each is in 40% of battles.
    assert sampling.count('<rect class="expected" y="11" height="7" rx="2" width="80"/>') == 5
    assert 'Retired<span class="pill grey">deprecated</span>' in sampling


# --- API ------------------------------------------------------------------------------------


def test_api_rows_and_meta_have_stable_field_names(arena: Any, client: Client) -> None:
    data = client.get("/api/leaderboard?category=multi_turn&style_control=true").json()
    assert set(data["meta"]) >= {
        "snapshot_id", "created_at", "method", "params", "code_version", "category",
        "style_control", "valid_votes", "categories", "min_battles",
    }  # fmt: skip
    assert data["meta"]["category"] == "multi_turn" and data["meta"]["style_control"] is True
    full = client.get("/api/leaderboard").json()
    assert full["meta"]["valid_votes"] == 441
    assert all(set(row) == STABLE_ROW_FIELDS for row in full["rows"])


def test_csv_has_the_table_columns(arena: Any, client: Client) -> None:
    reply = client.get("/api/leaderboard.csv?style_control=1")
    assert reply["Content-Type"].startswith("text/csv")
    records = list(csv.DictReader(io.StringIO(reply.content.decode())))
    assert list(records[0])[:6] == ["rank", "model", "display_name", "rating", "lower", "upper"]
    assert {r["model"] for r in records} == {*STRENGTHS, "newbie"}
    assert next(r for r in records if r["model"] == "newbie")["status"] == "provisional"


# --- model card -----------------------------------------------------------------------------


def test_model_card_shows_each_category_and_the_head_to_head_record(
    arena: Any, client: Client
) -> None:
    page = client.get("/leaderboard/models/alpha")
    assert page.status_code == 200
    html = page.content.decode()
    assert "<h1>Alpha" in html and 'data-category="lang:de"' in html
    coding = html.split('data-category="coding"')[1].split("</tr>")[0]
    assert "provisional" in coding
    assert 'data-opponent="bravo"' in html and 'data-opponent="newbie"' in html


def test_model_api_head_to_head_counts_match_the_votes(arena: Any, client: Client) -> None:
    data = client.get("/api/models/alpha").json()
    valid = Vote.objects.filter(is_valid=True)
    for record in data["head_to_head"]:
        as_a = valid.filter(model_a__name="alpha", model_b__name=record["opponent"])
        as_b = valid.filter(model_b__name="alpha", model_a__name=record["opponent"])
        wins = as_a.filter(outcome="model_a").count() + as_b.filter(outcome="model_b").count()
        losses = as_a.filter(outcome="model_b").count() + as_b.filter(outcome="model_a").count()
        assert (record["wins"], record["losses"]) == (wins, losses)
        assert record["battles"] == as_a.count() + as_b.count()
        assert 0 <= record["predicted"] <= 1
    mine = valid.filter(model_a__name="alpha") | valid.filter(model_b__name="alpha")
    assert data["battles"] == mine.count()
    first = min(v.created_at for v in mine)
    reported = dt.datetime.fromisoformat(data["first_battle"].replace("Z", "+00:00"))
    assert abs(reported - first) < dt.timedelta(milliseconds=1)  # JSON keeps milliseconds
    overall = next(c for c in data["categories"] if c["category"] == "overall")
    assert overall["status"] == "rated" and overall["rank"] == 1
    assert 0.3 < data["share"] < 0.6 and data["expected_share"] == pytest.approx(0.4)


def test_unknown_model_is_404_on_page_and_api(arena: Any, client: Client) -> None:
    assert client.get("/leaderboard/models/nobody").status_code == 404
    reply = client.get("/api/models/nobody")
    assert reply.status_code == 404 and "Unknown model 'nobody'" in reply.json()["error"]


# --- speed ----------------------------------------------------------------------------------


def synthetic_snapshot(n_models: int, n_battles: int) -> LeaderboardSnapshot:
    """A snapshot of `n_models` registry models built from simulated arrays, not from votes."""
    rng = np.random.default_rng(3)
    battles = simulate(rng, rng.normal(0, 1, n_models), n_battles, tie_rate=0.1,
                       style=np.array([0.2, 0.0, 0.1, 0.0]))  # fmt: skip
    ArenaModel.objects.bulk_create(
        ArenaModel(name=name, display_name=name, backend="openai") for name in battles.names
    )
    params = {"ci": "sandwich", "rounds": 0, "confidence": 0.95, "l2": 0.0, "seed": 1,
              "style_control": True}  # fmt: skip
    result = category_result(battles, style_control=True, params=params, seed=1)
    results = {name: result for name in ("overall", "english", "coding")}
    return LeaderboardSnapshot.objects.create(
        method="bt", params=params, n_battles=n_battles, battle_hash="synthetic",
        code_version="test", results=results,
        history={"overall": [[r["model"], r["rating"], r["lower"], r["upper"]]
                             for r in result["rows"]]},
    )  # fmt: skip


def test_leaderboard_page_with_200_models_costs_a_fixed_number_of_queries(
    db: None, client: Client, django_assert_num_queries: Callable[..., Any]
) -> None:
    synthetic_snapshot(200, 60_000)
    # The cache stamp, latest snapshot, its results, the history, the registry, the demo banner.
    with django_assert_num_queries(6):
        page = client.get("/leaderboard?show_deprecated=1")
    assert page.status_code == 200 and page.content.count(b"data-model=") == 200
    # Later requests find the snapshot's results in memory: stamp, metadata, registry, banner.
    with django_assert_num_queries(4):
        assert client.get("/leaderboard?category=coding&style_control=1").status_code == 200
    with django_assert_num_queries(3):  # no page, no banner
        assert client.get("/api/leaderboard").status_code == 200
    with django_assert_num_queries(4):
        assert client.get("/leaderboard/models/model-007").status_code == 200


# --- groups and style control on thin data ------------------------------------------------------


def test_two_groups_and_a_lone_winner_are_named_in_api_csv_and_page(
    db: None, client: Client
) -> None:
    """alpha, bravo, charlie play each other, delta and echo only each other, xray beat yank."""
    rng = np.random.default_rng(11)
    models = {name: model(name) for name in ("alpha", "bravo", "charlie", "delta", "echo")}
    models |= {name: model(name) for name in ("xray", "yank")}
    add_votes(models, 90, rng=rng, pairs=[("alpha", "bravo"), ("bravo", "charlie"),
                                          ("charlie", "alpha")])  # fmt: skip
    add_votes(models, 40, rng=rng, pairs=[("delta", "echo")])
    add_votes(models, 1, rng=rng, pairs=[("xray", "yank")])
    Vote.objects.filter(model_a__name="xray").update(outcome="model_a")
    assert leaderboard_snapshot_create() is not None
    data = client.get("/api/leaderboard").json()
    rows = {r["model"]: r for r in data["rows"]}
    assert [r["group"] for r in data["rows"]] == [1, 1, 1, 2, 2, None, None]
    assert {rows[m]["group"] for m in ("alpha", "bravo", "charlie")} == {1}
    assert {rows[m]["group"] for m in ("delta", "echo")} == {2}
    assert 1 in {rows["delta"]["rank"], rows["echo"]["rank"]}
    assert (rows["xray"]["status"], rows["xray"]["note"], rows["xray"]["rating"]) == (
        "unrated", "only wins", None
    )  # fmt: skip
    assert (rows["yank"]["rank"], rows["yank"]["note"]) == (None, "only losses")
    assert data["meta"]["groups"] == 2
    records = list(csv.DictReader(io.StringIO(client.get("/api/leaderboard.csv").content.decode())))
    assert [(r["model"], r["group"]) for r in records][-2:] == [("xray", ""), ("yank", "")]
    assert {r["group"] for r in records} == {"1", "2", ""}
    page = client.get("/leaderboard").content.decode()
    assert "Group</button>" in page and 'id="groups-note"' in page
    assert "These votes form 2 groups of models" in page
    card = client.get("/api/models/delta").json()
    overall = next(c for c in card["categories"] if c["category"] == "overall")
    assert (overall["group"], overall["n_models"]) == (2, 2)
    assert "of 2 (group 2)" in client.get("/leaderboard/models/delta").content.decode()


def test_style_control_on_a_handful_of_votes_says_not_available(db: None, client: Client) -> None:
    """Six valid votes once showed lists -13.4 (-14.5 to -12.3) and a style rating of -5,507.8."""
    rng = np.random.default_rng(12)
    models = {name: model(name) for name in ("alpha", "bravo", "charlie")}
    add_votes(models, 6, rng=rng, pairs=[("alpha", "bravo"), ("bravo", "charlie"),
                                         ("charlie", "alpha")])  # fmt: skip
    snapshot = leaderboard_snapshot_create()
    assert snapshot is not None
    overall = snapshot.results["overall"]
    assert "style_rows" not in overall and "style" not in overall
    data = client.get("/api/leaderboard?style_control=1").json()
    note = data["meta"]["style_control_note"]
    assert note.startswith("style control not available: 6 battles among rated models")
    card = client.get("/api/models/alpha").json()
    entry = next(c for c in card["categories"] if c["category"] == "overall")
    assert entry["rating_style_control"] is None
    page = client.get("/leaderboard").content.decode()
    assert 'id="style-note"' in page and "not available: 6 battles" in page
    assert 'id="style-coefficients"' not in page
