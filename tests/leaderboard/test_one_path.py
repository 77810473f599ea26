"""One path from a battle to the fit: the same battles, stored as live votes or written as a log
file, give the same ratings, the same style-controlled ratings and the same categories."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from arena import services
from arena.models import ArenaModel, Battle, Response, ResponseStatus, Vote
from arena.streams import redis_client
from leaderboard.data.formats.reader import read_battle_log
from leaderboard.management.commands.rank import rank_file
from leaderboard.pipeline import battles as battle_data
from leaderboard.pipeline.categories import category_mask
from leaderboard.pipeline.snapshots import categories, leaderboard_snapshot_create
from tests.conftest import answer_play

ATOL = 1e-6
N_BATTLES = 120  # above style control's minimum of 100 battles
PROMPTS = [
    "Write a haiku about rivers.",
    "List five prime numbers greater than 100.",
    "Wie spät ist es in Tokio und warum?",
    "Explique-moi la photosynthèse, s'il te plaît.",
    "Fix this code:\n```python\nprint(1/0)\n```",
    "Explain the difference between a list and a tuple. " * 25,  # a long prompt
]
FOLLOW_UP = "Now say it in one sentence."


def _answer(rng: np.random.Generator, strength: float) -> tuple[str, float]:
    """An answer whose markdown grows with ``strength``, and the log-odds bonus it earns."""
    headers, items, bold = (int(x) for x in rng.poisson([strength, 2 * strength, strength]))
    words = int(rng.integers(5, 40))
    text = "\n".join(
        [f"# Part {k}" for k in range(headers)]
        + [f"- item {k} with **bold {k}**" if k < bold else f"- item {k}" for k in range(items)]
        + [" ".join(["word"] * words)]
    )
    return text, 0.02 * words + 0.3 * items


def _play_last_turn(battle: Battle, rng: np.random.Generator, strengths: dict[str, float]) -> float:
    """Answer both sides of the battle's open turn; the log-odds that A wins on style."""
    bonus = {}
    for response in Response.objects.filter(
        turn__battle=battle, superseded=False, status=ResponseStatus.QUEUED
    ).select_related("model"):
        text, bonus[response.side] = _answer(rng, strengths[response.model.name])
        answer_play(response, text)
    return bonus["a"] - bonus["b"]


@pytest.fixture
def live_votes(cast: dict[str, ArenaModel], settings: Any) -> list[Vote]:
    """Battles played through the arena's services: prompts in three languages, code, long and
    two-turn prompts; outcomes drawn from strengths plus a bonus for long, listy answers."""
    settings.ARENA_LEADERBOARD_CI = "sandwich"
    settings.ARENA_LEADERBOARD_STYLE_CONTROL = True
    settings.ARENA_BATTLES_PER_MINUTE = settings.ARENA_VOTES_PER_MINUTE = 10_000
    redis_client().flushdb()
    options = cast["tiny-a"].options
    cast["tiny-c"] = ArenaModel.objects.create(
        name="tiny-c", display_name="Tiny Gamma", backend="local", options=options
    )
    strengths = {"tiny-a": 0.0, "tiny-b": 0.6, "tiny-c": 1.2}
    rng = np.random.default_rng(11)
    for k in range(N_BATTLES):
        visitor = f"visitor-{k}"
        prompt = f"{PROMPTS[k % len(PROMPTS)]} ({k})"
        battle = services.battle_create(visitor_id=visitor, prompt=prompt, rng=rng)
        bonus = _play_last_turn(battle, rng, strengths)
        if k % 5 == 0:
            services.battle_continue(battle=battle, visitor_id=visitor, prompt=FOLLOW_UP)
            bonus += _play_last_turn(battle, rng, strengths)
        logit = strengths[battle.model_a.name] - strengths[battle.model_b.name] + bonus
        choice = "a" if rng.random() < 1 / (1 + np.exp(-logit)) else "b"
        if k % 9 == 0:
            choice = "tie"
        services.vote_record(battle=battle, visitor_id=visitor, choice=choice)
    return list(Vote.objects.order_by("id").select_related("model_a", "model_b"))


def _log(votes: list[Vote], path: Path) -> Path:
    """The battles as a public log holds them: names, outcome, time and the texts; no facts."""
    path.write_text(
        json.dumps(
            [
                {
                    "model_a": v.model_a.name,
                    "model_b": v.model_b.name,
                    "winner": v.outcome,
                    "tstamp": v.created_at.timestamp(),
                    "anony": True,
                    "conversation_a": v.conversation_a,
                    "conversation_b": v.conversation_b,
                }
                for v in votes
            ]
        )
    )
    return path


def _by_model(rows: list[dict[str, Any]]) -> dict[str, tuple[float, float, float]]:
    return {r["model"]: (r["rating"], r["lower"], r["upper"]) for r in rows}


def test_live_votes_and_their_log_file_give_the_same_ratings_and_categories(
    live_votes: list[Vote], tmp_path: Path
) -> None:
    assert all(v.is_valid for v in live_votes)
    path = _log(live_votes, tmp_path / "battles.json")
    snapshot = leaderboard_snapshot_create()
    assert snapshot is not None and snapshot.n_battles == N_BATTLES

    # Plain Bradley-Terry: the API's door and `rank --input` agree.
    quiet = {"output": "json", "stdout": io.StringIO(), "stderr": io.StringIO()}
    plain = rank_file(input=str(path), ci="sandwich", **quiet)
    stored = _by_model(snapshot.results["overall"]["rows"])
    expected = _by_model(plain.records())
    assert stored.keys() == expected.keys() == {"tiny-a", "tiny-b", "tiny-c"}
    for model, values in stored.items():
        assert values == pytest.approx(expected[model], abs=ATOL), model

    # Style control: the same features, by the same names, give the same fit.
    styled = rank_file(input=str(path), ci="sandwich", style_control=True, **quiet)
    stored = _by_model(snapshot.results["overall"]["style_rows"])
    for model, values in _by_model(styled.records()).items():
        assert stored[model] == pytest.approx(values, abs=ATOL), model
    coefficients = {c["name"]: c["value"] for c in snapshot.results["overall"]["style"]}
    assert list(coefficients) == ["answer_tokens", "headers", "lists", "bold"]
    for c in styled.style:
        assert coefficients[c.name] == pytest.approx(c.value, abs=ATOL), c.name

    # Categories: each one holds the same battles from the database and from the file.
    from_file = read_battle_log(path)
    ids = [v.id for v in live_votes]
    sizes = {}
    for category in categories():
        in_db = set(
            battle_data.valid_votes()
            .filter(battle_data.category_filter(category))
            .values_list("id", flat=True)
        )
        in_file = category_mask(from_file, category)
        assert [i in in_db for i in ids] == in_file.tolist(), category.name
        sizes[category.name] = int(in_file.sum())
    # Every category is exercised, and short English prompts are English.
    assert 0 < sizes["english"] < sizes["overall"] and sizes["non_english"] > 0
    assert sizes["english"] + sizes["non_english"] == sizes["overall"]
    assert min(sizes["coding"], sizes["multi_turn"], sizes["long_prompt"]) > 0
    languages = Vote.objects.filter(conversation_a__0__content__startswith="Write a haiku")
    assert set(languages.values_list("language", flat=True)) == {"en"}
