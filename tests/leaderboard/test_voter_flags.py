"""Flagged voters: the detector over stored votes, their exclusion from the ratings, and staff
re-inclusion in the admin."""

from __future__ import annotations

import datetime as dt
import io
from typing import Any

import numpy as np
import pytest
from django.core.management import call_command
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from arena.models import ArenaModel, Vote
from leaderboard.models import LeaderboardSnapshot, VoterFlag
from leaderboard.pipeline import battles as battle_data
from leaderboard.pipeline.flags import voter_flags_update
from leaderboard.pipeline.snapshots import FLAGGED_VOTER_REASON, leaderboard_snapshot_create
from leaderboard.tasks import refresh_leaderboard
from tests.conftest import Visitors
from tests.factories import vote_build, votes_store

STRENGTHS = {"m0": 0.0, "m1": 0.5, "m2": 1.0, "m3": 1.5}
HONEST_VOTERS, HONEST_VOTES, ATTACK_VOTES = 40, 15, 40
FAST = {"ARENA_LEADERBOARD_CI": "sandwich", "ARENA_LEADERBOARD_STYLE_CONTROL": False}


@pytest.fixture
def arena(db: None, settings: Any) -> dict[str, ArenaModel]:
    """40 honest Bradley-Terry voters, 15 votes each, a vote every ten minutes; and one attacker
    who picks the weakest model, m0, in 40 battles against the strongest, on either side."""
    for key, value in FAST.items():
        setattr(settings, key, value)
    rng = np.random.default_rng(7)
    models = {
        name: ArenaModel.objects.create(name=name, display_name=name, backend="local")
        for name in STRENGTHS
    }
    names, strength = list(STRENGTHS), np.array(list(STRENGTHS.values()))
    start = timezone.now() - dt.timedelta(days=3)
    made = []

    def vote(a: str, b: str, outcome: str, voter: str, when: dt.datetime) -> None:
        made.append(
            vote_build(models[a], models[b], outcome, visitor_id=voter, when=when, created_at=when)
        )

    for v in range(HONEST_VOTERS):
        for k in range(HONEST_VOTES):
            i, j = rng.choice(len(names), size=2, replace=False)
            p = 1 / (1 + np.exp(strength[j] - strength[i]))
            outcome = "model_a" if rng.random() < p else "model_b"
            vote(names[i], names[j], outcome, f"honest-{v}", start + dt.timedelta(minutes=10 * k))
    for k in range(ATTACK_VOTES):
        when = start + dt.timedelta(minutes=10 * k)
        if k % 2:
            vote("m0", "m3", "model_a", "attacker", when)
        else:
            vote("m3", "m0", "model_b", "attacker", when)
    votes_store(made)
    return models


def overall(snapshot: LeaderboardSnapshot | None) -> dict[str, dict[str, Any]]:
    assert snapshot is not None
    return {row["model"]: row for row in snapshot.results["overall"]["rows"]}


def test_the_detector_flags_the_attacker_and_no_honest_voter(arena: Any) -> None:
    update = voter_flags_update()
    assert update.voters_tested == HONEST_VOTERS + 1
    flag = VoterFlag.objects.get()
    assert flag.voter == "attacker"
    assert "disagreement" in flag.reasons and flag.excluded
    assert flag.n_votes == ATTACK_VOTES
    assert flag.statistics["disagreement_wealth"] >= 1 / flag.statistics["alpha"]
    assert flag.statistics["disagreement_after"] <= ATTACK_VOTES


def test_exclusion_takes_the_votes_out_of_the_ratings_and_re_inclusion_brings_them_back(
    arena: Any, visitors: Visitors
) -> None:
    total = HONEST_VOTERS * HONEST_VOTES + ATTACK_VOTES
    counted = overall(leaderboard_snapshot_create())
    assert counted["m0"]["battles"] + counted["m3"]["battles"] >= 2 * ATTACK_VOTES

    voter_flags_update()
    assert battle_data.valid_votes().count() == total - ATTACK_VOTES
    excluded = leaderboard_snapshot_create()
    assert excluded is not None and excluded.n_battles == total - ATTACK_VOTES
    without = overall(excluded)
    assert without["m0"]["battles"] == counted["m0"]["battles"] - ATTACK_VOTES
    assert without["m3"]["battles"] == counted["m3"]["battles"] - ATTACK_VOTES
    # The attacker's 40 wins had lifted m0 and sunk m3.
    assert without["m0"]["rating"] < counted["m0"]["rating"]
    assert without["m3"]["rating"] > counted["m3"]["rating"]
    assert excluded.details["votes"]["excluded"][FLAGGED_VOTER_REASON] == ATTACK_VOTES
    assert excluded.details["votes"]["excluded_voters"] == 1
    # The votes themselves are untouched.
    assert Vote.objects.filter(visitor_id="attacker", is_valid=True).count() == ATTACK_VOTES

    staff = visitors.staff
    client = Client()
    client.force_login(staff)
    flag = VoterFlag.objects.get()
    reply = client.post(
        reverse("admin:leaderboard_voterflag_changelist"),
        {"action": "re_include_voters", "_selected_action": [flag.id]},
        follow=True,
    )
    assert reply.status_code == 200
    flag.refresh_from_db()
    assert not flag.excluded and flag.reviewed_by == staff and flag.reviewed_at is not None

    back = overall(leaderboard_snapshot_create())
    assert back == counted  # the same votes, the same seed: the same board

    # The detector keeps the staff's decision, and refreshes the statistics.
    voter_flags_update()
    flag.refresh_from_db()
    assert not flag.excluded and "disagreement" in flag.reasons


def test_staff_can_exclude_again_and_the_page_shows_the_excluded_votes(
    arena: Any, visitors: Visitors
) -> None:
    voter_flags_update()
    flag = VoterFlag.objects.get()
    staff = visitors.staff
    client = Client()
    client.force_login(staff)
    changelist = reverse("admin:leaderboard_voterflag_changelist")
    client.post(changelist, {"action": "re_include_voters", "_selected_action": [flag.id]})
    client.post(changelist, {"action": "exclude_voters", "_selected_action": [flag.id]})
    flag.refresh_from_db()
    assert flag.excluded and flag.reviewed_by == staff
    assert leaderboard_snapshot_create() is not None
    page = client.get(reverse("leaderboard")).content.decode()
    assert FLAGGED_VOTER_REASON in page


def test_an_unreviewed_flag_the_detector_no_longer_supports_is_cleared(arena: Any) -> None:
    VoterFlag.objects.create(voter="honest-3", reasons=["burst"], excluded=True)
    staff_kept = VoterFlag.objects.create(
        voter="honest-4", reasons=["burst"], excluded=True, reviewed_at=timezone.now()
    )
    update = voter_flags_update()
    assert update.cleared == 1
    assert set(VoterFlag.objects.values_list("voter", flat=True)) == {"attacker", "honest-4"}
    staff_kept.refresh_from_db()
    assert staff_kept.excluded


def test_the_periodic_refresh_flags_before_it_fits(arena: Any, settings: Any) -> None:
    settings.ARENA_ANOMALY_DETECTION = True
    snapshot_id = refresh_leaderboard()
    snapshot = LeaderboardSnapshot.objects.get(id=snapshot_id)
    assert VoterFlag.objects.filter(voter="attacker", excluded=True).exists()
    assert snapshot.n_battles == HONEST_VOTERS * HONEST_VOTES


def test_the_refresh_command_runs_the_detector_unless_told_not_to(arena: Any) -> None:
    call_command("refresh_leaderboard", "--no-detect-anomalies", stdout=io.StringIO())
    assert not VoterFlag.objects.exists()
    call_command("refresh_leaderboard", "--detect-anomalies", "--force", stdout=io.StringIO())
    assert VoterFlag.objects.filter(voter="attacker").exists()


def test_an_imported_logs_judges_are_tested_against_their_own_log(
    arena: Any, tmp_path: Any
) -> None:
    """A log from another crowd, in which m0 beats m3, is not the live arena's crowd: its judges
    are tested against their own log's consensus, not flagged for disagreeing with the arena's,
    and the transparency data counts each source apart."""
    import json

    from leaderboard.data.importer import battles_import
    from leaderboard.pipeline.flags import voter_summary

    rng = np.random.default_rng(3)
    records = [
        {"model_a": "m0", "model_b": "m3", "winner": "model_a" if rng.random() < 0.85 else
         "model_b", "judge": f"judge-{j}", "tstamp": 1.7e9 + 3600 * (15 * j + k)}
        for j in range(10) for k in range(15)
    ]  # fmt: skip
    path = tmp_path / "other-crowd.json"
    path.write_text(json.dumps(records))
    battles_import(path=path, source="other-crowd")
    # A log without judges: its votes belong to no voter, none is tested, all count.
    for record in records:
        del record["judge"]
    path.write_text(json.dumps(records))
    battles_import(path=path, source="no-judges")
    update = voter_flags_update()
    assert update.per_source == {"arena": (HONEST_VOTERS + 1, 1), "import:other-crowd": (10, 0)}
    assert list(VoterFlag.objects.values_list("voter", flat=True)) == ["attacker"]
    assert VoterFlag.objects.get().statistics["source"] == "arena"
    summary = {s["source"]: s for s in voter_summary()}
    assert summary["arena"]["voters_tested"] == HONEST_VOTERS + 1
    assert summary["arena"]["votes_excluded"] == ATTACK_VOTES
    assert summary["import:no-judges"]["voters_tested"] == 0
    assert summary["import:no-judges"]["valid_votes"] == 150
    assert summary["import:other-crowd"] == {
        "source": "import:other-crowd", "valid_votes": 150, "voters_tested": 10,
        "shared_judges": 0, "flagged": 0, "excluded_voters": 0, "votes_excluded": 0,
    }  # fmt: skip
