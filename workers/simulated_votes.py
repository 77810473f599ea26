"""Simulated battles and votes for the demo (`manage.py seed_votes`), marked as such.

A fresh demo needs hundreds of votes before its leaderboard rates anyone. This fills it with
made-up ones: prompts and answers taken from the demo corpus (the better-trained model answers
the question asked more often), outcomes drawn from a Bradley-Terry "truth" in which a model's
strength grows with the logarithm of its training steps, so the ranking that the leaderboard
recovers is the order in which the models were trained. Every row made here has
`simulated=True`; the leaderboard says how many of its votes are simulated, and exports leave
them out unless asked.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from django.db import transaction
from django.utils import timezone

from arena import facts
from arena.messages import Message
from arena.models import ArenaModel, Battle, Outcome, Response, ResponseStatus, Side, Turn, Vote
from workers.demo_corpus import Pair

SOURCE = "simulated"
# One strength unit per e-fold of training steps: with 120 / 50 / 20 steps, the best model
# beats the worst about 6 times in 7 (decisive votes).
TRUTH_SCALE = 1.0
TIE_PROBABILITY = 0.10
BOTH_BAD_PROBABILITY = 0.05
# Each simulated voter casts about this many votes, spread over the period.
VOTES_PER_VOTER = 5


class SeedRefused(Exception):
    """The database is not one to fill with simulated votes (the message says why)."""


@dataclass
class SeedResult:
    votes: int = 0
    wins: dict[str, int] = field(default_factory=dict)
    battles: dict[str, int] = field(default_factory=dict)


def truth_strengths(
    train_steps: Mapping[str, int], *, scale: float = TRUTH_SCALE
) -> dict[str, float]:
    """Bradley-Terry log-strengths, `scale * ln(steps)`, centred on their mean.

    Parameters
    ----------
    train_steps
        Training steps per model name; each at least 1.
    scale
        Strength per e-fold of steps.

    Returns
    -------
    dict
        Model name to log-strength: P(i beats j) = 1 / (1 + exp(s_j - s_i)).

    Raises
    ------
    ValueError
        On a model with fewer than 1 step.
    """
    if any(steps < 1 for steps in train_steps.values()):
        raise ValueError(f"every model needs at least 1 training step: {dict(train_steps)}")
    raw = {name: scale * math.log(steps) for name, steps in train_steps.items()}
    mean = sum(raw.values()) / len(raw) if raw else 0.0
    return {name: value - mean for name, value in raw.items()}


def outcome_draw(rng: random.Random, strength_a: float, strength_b: float) -> Outcome:
    """One vote on a battle between models of these strengths."""
    roll = rng.random()
    if roll < BOTH_BAD_PROBABILITY:
        return Outcome.BOTH_BAD
    if roll < BOTH_BAD_PROBABILITY + TIE_PROBABILITY:
        return Outcome.TIE
    p_a = 1.0 / (1.0 + math.exp(strength_b - strength_a))
    return Outcome.MODEL_A if rng.random() < p_a else Outcome.MODEL_B


def seed_check(*, demo: bool, not_production: bool, force: bool) -> None:
    """Raise SeedRefused unless this database may receive simulated votes."""
    if not (demo or not_production):
        raise SeedRefused(
            "seed_votes fills a demo with simulated votes: set ARENA_DEMO=1 (or pass "
            "--i-know-this-is-not-production) to run it"
        )
    # Votes a person cast between two demo models are the demo being tried, not a real arena;
    # a vote with any other model is. (has_key: the registry sets "demo" only when true.)
    real = (
        Vote.objects.filter(simulated=False)
        .exclude(model_a__options__has_key="demo", model_b__options__has_key="demo")
        .count()
    )
    if real and not force:
        raise SeedRefused(
            f"the database already holds {real} real (non-simulated) vote(s) on models that "
            "are not demo models; simulated votes would be mixed into a real arena's "
            "leaderboard (pass --force if that is what you want)"
        )


def simulated_votes_clear() -> int:
    """Delete every simulated vote and battle (turns and responses go with their battle)."""
    with transaction.atomic():
        deleted, _ = Vote.objects.filter(simulated=True).delete()
        Battle.objects.filter(simulated=True).delete()
    return int(deleted)


def simulated_votes_create(
    *,
    models: Sequence[ArenaModel],
    train_steps: Mapping[str, int],
    pairs: Sequence[Pair],
    votes: int,
    seed: int = 0,
    days: float = 7.0,
    now: dt.datetime | None = None,
) -> SeedResult:
    """Create `votes` simulated battles, each with one turn, two answers and a valid vote.

    Battles pair two distinct `models` uniformly, the prompt is a question of `pairs`, and each
    side answers it right with a probability that grows with its strength (otherwise with the
    answer to another question). Times are spread over the last `days` days. Seeded: the same
    arguments give the same prompts, answers and outcomes.
    """
    if len(models) < 2:
        raise ValueError("simulated battles need at least two models")
    if votes < 1:
        raise ValueError(f"votes must be at least 1, not {votes}")
    rng = random.Random(seed)
    strengths = truth_strengths({m.name: train_steps[m.name] for m in models})
    top = max(strengths.values())
    bottom = min(strengths.values())
    spread = (top - bottom) or 1.0
    # The best model answers the question asked 9 times in 10, the worst 4 in 10.
    right_answer = {name: 0.4 + 0.5 * (s - bottom) / spread for name, s in strengths.items()}
    end = now or timezone.now()
    voters = [
        "sim-" + hashlib.sha256(f"simulated voter {seed} {k}".encode()).hexdigest()[:40]
        for k in range(max(1, votes // VOTES_PER_VOTER))
    ]
    languages: dict[str, str] = {}
    result = SeedResult()
    with transaction.atomic():
        for _ in range(votes):
            model_a, model_b = rng.sample(list(models), 2)
            question, answer = pairs[rng.randrange(len(pairs))]
            texts = {
                side: answer
                if rng.random() < right_answer[model.name]
                else pairs[rng.randrange(len(pairs))][1]
                for side, model in ((Side.A, model_a), (Side.B, model_b))
            }
            outcome = outcome_draw(rng, strengths[model_a.name], strengths[model_b.name])
            voted_at = end - dt.timedelta(seconds=rng.uniform(0, days * 86400))
            started_at = voted_at - dt.timedelta(seconds=rng.uniform(15, 180))
            visitor = rng.choice(voters)
            battle = Battle.objects.create(
                model_a=model_a,
                model_b=model_b,
                visitor_id=visitor,
                created_at=started_at,
                simulated=True,
            )
            turn = Turn.objects.create(battle=battle, index=0, prompt=question)
            tokens = {}
            for side, model in ((Side.A, model_a), (Side.B, model_b)):
                # About 3 characters per token with the demo tokenizers.
                tokens[side] = max(1, len(texts[side]) // 3)
                Response.objects.create(
                    turn=turn,
                    side=side,
                    model=model,
                    status=ResponseStatus.DONE,
                    text=texts[side],
                    finish_reason="stop",
                    prompt_tokens=max(1, len(question) // 3),
                    completion_tokens=tokens[side],
                    started_at=started_at,
                    finished_at=started_at + dt.timedelta(seconds=rng.uniform(1, 10)),
                )
            conversations: dict[str, list[Message]] = {
                side: [
                    {"role": "user", "content": question},
                    {"role": "assistant", "content": texts[side]},
                ]
                for side in (Side.A, Side.B)
            }
            if question not in languages:
                languages[question] = facts.language_guess(question)
            Vote.objects.create(
                battle=battle,
                model_a=model_a,
                model_b=model_b,
                outcome=outcome,
                visitor_id=visitor,
                conversation_a=conversations[Side.A],
                conversation_b=conversations[Side.B],
                language=languages[question],
                turns=1,
                prompt_chars=len(question),
                has_code=facts.has_code([question, *texts.values()]),
                tokens_a=tokens[Side.A],
                tokens_b=tokens[Side.B],
                style_a=facts.conversation_style(conversations[Side.A]),
                style_b=facts.conversation_style(conversations[Side.B]),
                battle_started_at=started_at,
                created_at=voted_at,
                source=SOURCE,
                simulated=True,
            )
            result.votes += 1
            for model in (model_a, model_b):
                result.battles[model.name] = result.battles.get(model.name, 0) + 1
            winner = {Outcome.MODEL_A: model_a, Outcome.MODEL_B: model_b}.get(outcome)
            if winner is not None:
                result.wins[winner.name] = result.wins.get(winner.name, 0) + 1
    return result
