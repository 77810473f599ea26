"""`manage.py seed_votes`: simulated votes for a demo, opt-in, marked simulated everywhere."""

from __future__ import annotations

import json
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client
from django.test.utils import override_settings

from arena.models import ArenaModel, Battle, Outcome, Vote
from leaderboard.data.export import ExportFilters, preferences_export
from leaderboard.models import LeaderboardSnapshot
from workers.simulated_votes import simulated_votes_create, truth_strengths
from workers.tiny_models import DEMO_MODELS

pytestmark = pytest.mark.django_db

STEPS = {spec.name: spec.train_steps for spec in DEMO_MODELS}
# Few bootstrap rounds: the test checks the order of the ratings, not their intervals.
FAST = override_settings(ARENA_LEADERBOARD_ROUNDS=20, ARENA_LEADERBOARD_CI="sandwich")


@pytest.fixture
def demo_models() -> list[ArenaModel]:
    return [
        ArenaModel.objects.create(
            name=spec.name,
            display_name=spec.display_name,
            organization=spec.organization,
            backend="local",
            options={"path": f"/nonexistent/{spec.name}", "demo": True},
        )
        for spec in DEMO_MODELS
    ]


def seed(*args: str) -> str:
    out = StringIO()
    call_command("seed_votes", *args, stdout=out)
    return out.getvalue()


def real_vote(models: list[ArenaModel]) -> Vote:
    battle = Battle.objects.create(model_a=models[0], model_b=models[1], visitor_id="person")
    return Vote.objects.create(
        battle=battle, model_a=models[0], model_b=models[1], outcome=Outcome.TIE,
        visitor_id="person", conversation_a=[], conversation_b=[], turns=1, prompt_chars=1,
        battle_started_at=battle.created_at,
    )  # fmt: skip


@override_settings(ARENA_DEMO=False)
def test_refuses_outside_a_demo(demo_models: list[ArenaModel]) -> None:
    with pytest.raises(CommandError, match="ARENA_DEMO=1"):
        seed("--votes", "5", "--no-refresh")
    assert not Vote.objects.exists()


@override_settings(ARENA_DEMO=False)
def test_runs_outside_a_demo_when_told_it_is_not_production(
    demo_models: list[ArenaModel],
) -> None:
    seed("--votes", "5", "--no-refresh", "--i-know-this-is-not-production")
    assert Vote.objects.filter(simulated=True).count() == 5


@override_settings(ARENA_DEMO=True)
def test_votes_a_person_cast_on_the_demo_models_do_not_stop_it(
    demo_models: list[ArenaModel],
) -> None:
    real_vote(demo_models)
    seed("--votes", "5", "--no-refresh")
    assert Vote.objects.filter(simulated=True).count() == 5


@override_settings(ARENA_DEMO=True)
def test_refuses_a_database_with_real_votes_unless_forced(demo_models: list[ArenaModel]) -> None:
    real_model = ArenaModel.objects.create(
        name="real-model", display_name="Real", backend="local", options={"path": "/x"}
    )
    real_vote([real_model, demo_models[0]])
    with pytest.raises(CommandError, match="1 real"):
        seed("--votes", "5", "--no-refresh")
    assert not Vote.objects.filter(simulated=True).exists()
    seed("--votes", "5", "--no-refresh", "--force")
    assert Vote.objects.filter(simulated=True).count() == 5
    assert Vote.objects.filter(simulated=False).count() == 1


@override_settings(ARENA_DEMO=True)
def test_refuses_without_the_demo_models() -> None:
    with pytest.raises(CommandError, match="build_demo_models"):
        seed("--votes", "5", "--no-refresh")


@override_settings(ARENA_DEMO=True)
def test_every_seeded_row_is_simulated_valid_and_whole(demo_models: list[ArenaModel]) -> None:
    seed("--votes", "40", "--no-refresh")
    votes = Vote.objects.select_related("battle")
    assert votes.count() == 40
    for vote in votes:
        assert vote.simulated and vote.battle.simulated and vote.is_valid
        assert vote.source == "simulated"
        assert vote.model_a_id != vote.model_b_id
        assert vote.conversation_a[0]["role"] == "user"
        assert vote.conversation_a[1]["content"] and vote.conversation_b[1]["content"]
        responses = list(vote.battle.turns.get().responses.all())
        assert sorted(r.side for r in responses) == ["a", "b"]
        assert all(r.status == "done" and r.finish_reason == "stop" for r in responses)
    # Many voters, not one voter casting every vote (the anomaly detector would flag that).
    assert Vote.objects.values("visitor_id").distinct().count() >= 5
    # --clear replaces them.
    seed("--votes", "10", "--no-refresh", "--clear")
    assert Vote.objects.count() == 10
    assert Battle.objects.count() == 10


def test_same_seed_same_votes(demo_models: list[ArenaModel]) -> None:
    def outcomes(seed_value: int) -> list[tuple[str, str, str, str]]:
        Vote.objects.all().delete()
        Battle.objects.all().delete()
        simulated_votes_create(
            models=demo_models, train_steps=STEPS, pairs=[("Q?", "A."), ("R?", "B.")], votes=30,
            seed=seed_value,
        )  # fmt: skip
        return list(
            Vote.objects.order_by("created_at").values_list(
                "model_a__name", "model_b__name", "outcome", "conversation_a"
            )
        )

    assert outcomes(1) == outcomes(1)
    assert outcomes(1) != outcomes(2)


def test_truth_follows_the_training_steps() -> None:
    strengths = truth_strengths(STEPS)
    order = sorted(STEPS, key=lambda name: -STEPS[name])
    assert sorted(strengths, key=lambda name: -strengths[name]) == order
    assert abs(sum(strengths.values())) < 1e-9
    with pytest.raises(ValueError, match="at least 1"):
        truth_strengths({"a": 0, "b": 3})


@FAST
@override_settings(ARENA_DEMO=True)
def test_the_leaderboard_finds_the_training_order_and_says_the_votes_are_simulated(
    demo_models: list[ArenaModel], tmp_path: Path
) -> None:
    real_vote(demo_models)
    output = seed("--votes", "500", "--force")
    assert "created 500 simulated battles and votes" in output
    snapshot = LeaderboardSnapshot.objects.latest()
    assert snapshot.details["votes"]["simulated"] == 500
    assert snapshot.n_battles == 501
    rows = snapshot.results["overall"]["rows"]
    by_rating = [row["model"] for row in sorted(rows, key=lambda row: -row["rating"])]
    assert by_rating == sorted(STEPS, key=lambda name: -STEPS[name])

    client = Client()
    meta = client.get("/api/leaderboard").json()["meta"]
    assert (meta["simulated_votes"], meta["total_valid_votes"]) == (500, 501)
    page = client.get("/leaderboard").content.decode()
    assert 'id="simulated-votes"' in page
    assert "Includes 500 simulated votes" in page

    # Exports leave them out unless asked for, and then mark each one.
    default = preferences_export(output=tmp_path / "default", fmt="arena")
    assert default.records == 1
    full = preferences_export(
        output=tmp_path / "full", fmt="arena", filters=ExportFilters(include_simulated=True)
    )
    assert full.records == 501
    records = [
        json.loads(line)
        for path in sorted((tmp_path / "full" / "data").glob("*.jsonl"))
        for line in path.read_text().splitlines()
    ]
    assert sum(r["simulated"] for r in records) == 500
    card = (tmp_path / "full" / "README.md").read_text()
    assert "simulated votes (seed_votes) included" in card


def test_a_leaderboard_without_simulated_votes_shows_no_banner(
    demo_models: list[ArenaModel],
) -> None:
    real_vote(demo_models)
    with FAST:
        call_command("refresh_leaderboard", "--force", stdout=StringIO())
    client = Client()
    assert client.get("/api/leaderboard").json()["meta"]["simulated_votes"] == 0
    assert 'id="simulated-votes"' not in client.get("/leaderboard").content.decode()
