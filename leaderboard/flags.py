"""Voter flags: the anomaly detector run over the stored votes, and staff review of its verdicts.

The tests themselves are pure (leaderboard/anomaly.py); this module reads the votes they need,
records a :class:`~leaderboard.models.VoterFlag` per flagged voter and applies staff decisions.
A flag with ``excluded`` takes every vote of that voter out of ``valid_votes()``, hence out of
the ratings, the exports and the sampling plan; nothing is deleted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db import transaction
from django.db.models import Count
from django.utils import timezone

from arena.models import Vote
from leaderboard import battles as battle_data
from leaderboard.anomaly import Thresholds, VoterResult, cell_counts, detect_voters
from leaderboard.models import VoterFlag
from leaderboard.pairs import OUTCOME_CODES

# Voters with fewer valid votes are not tested: no test can flag one or two votes unless the
# consensus is near certain, and most visitors vote once or twice (the query stays small).
TESTED_MIN_VOTES = 3


def anomaly_thresholds() -> Thresholds:
    """The detector's settings (ARENA_ANOMALY_*)."""
    return Thresholds(
        alpha=settings.ARENA_ANOMALY_ALPHA,
        burst_votes=settings.ARENA_ANOMALY_BURST_VOTES,
        burst_seconds=float(settings.ARENA_ANOMALY_BURST_SECONDS),
        side_min_votes=settings.ARENA_ANOMALY_SIDE_MIN_VOTES,
    )


@dataclass(frozen=True)
class FlagUpdate:
    """What one run of the detector did."""

    voters_tested: int
    flagged: int  # voters flagged now (new or already flagged)
    created: int
    cleared: int  # unreviewed flags the detector no longer supports, removed
    excluded: int  # voters excluded after the run (staff decisions included)


def _statistics(result: VoterResult, thresholds: Thresholds) -> dict[str, Any]:
    return {
        "votes": result.n_votes,
        "decisive": result.n_decisive,
        "alpha": thresholds.alpha,
        "disagreement_wealth": round(result.disagreement_wealth, 4),
        "disagreement_after": result.disagreement_after,
        "side_a": result.side_a,
        "side_wealth": round(result.side_wealth, 4),
        "side_after": result.side_after,
        "burst_max": result.burst_max,
        "burst_window_seconds": thresholds.burst_seconds,
        "burst_after": result.burst_after,
    }


def voter_results(thresholds: Thresholds) -> tuple[list[str], list[VoterResult]]:
    """Run the detector over the valid votes: the tested voters' pseudonyms and their results.

    The consensus is fitted on the votes that count (valid, voter not excluded), so an excluded
    attacker no longer drags it; the voters tested are every voter with ``TESTED_MIN_VOTES``
    valid votes, excluded ones included (their statistics stay current for review).
    """
    names, index = battle_data.model_names()
    if len(names) < 2:
        return [], []
    cells = list(
        battle_data.valid_votes()
        .values_list("model_a_id", "model_b_id", "outcome")
        .annotate(n=Count("id"))
        .order_by()
    )
    consensus = cell_counts(
        np.array([index[c[0]] for c in cells], dtype=np.int64),
        np.array([index[c[1]] for c in cells], dtype=np.int64),
        np.array([OUTCOME_CODES[c[2]] for c in cells], dtype=np.int64),
        len(names),
        np.array([c[3] for c in cells], dtype=np.int64),
    )
    valid = Vote.objects.filter(is_valid=True).exclude(visitor_id="")
    tested = (
        valid.values("visitor_id")
        .annotate(n=Count("id"))
        .order_by()
        .filter(n__gte=TESTED_MIN_VOTES)
        .values("visitor_id")
    )
    rows = list(
        valid.filter(visitor_id__in=tested)
        .order_by()
        .values_list("visitor_id", "model_a_id", "model_b_id", "outcome", "created_at")
    )
    if not rows:
        return [], []
    excluded = set(battle_data.excluded_voters().values_list("voter", flat=True))
    voters = sorted({row[0] for row in rows})
    label = {voter: k for k, voter in enumerate(voters)}
    results = detect_voters(
        np.array([label[r[0]] for r in rows], dtype=np.int64),
        np.array([index[r[1]] for r in rows], dtype=np.int64),
        np.array([index[r[2]] for r in rows], dtype=np.int64),
        np.array([OUTCOME_CODES[r[3]] for r in rows], dtype=np.int64),
        np.array([r[4].timestamp() for r in rows], dtype=np.float64),
        consensus=consensus,
        n_models=len(names),
        thresholds=thresholds,
        in_consensus=np.array([r[0] not in excluded for r in rows], dtype=bool),
    )
    return voters, results


def voter_flags_update(*, thresholds: Thresholds | None = None) -> FlagUpdate:
    """Run the detector and record its verdicts.

    A newly flagged voter gets a flag that excludes their votes. A flag already there has its
    reasons and statistics refreshed; its ``excluded`` changes only by staff review. An
    unreviewed flag that the detector no longer supports (the consensus moved) is removed.
    """
    thresholds = thresholds or anomaly_thresholds()
    voters, results = voter_results(thresholds)
    now = timezone.now()
    created = cleared = flagged = 0
    with transaction.atomic():
        existing = {flag.voter: flag for flag in VoterFlag.objects.select_for_update()}
        for result in results:
            voter = voters[result.voter]
            flag = existing.get(voter)
            if not result.flagged:
                if flag is not None and flag.reviewed_at is None:
                    flag.delete()
                    cleared += 1
                continue
            flagged += 1
            fields = {
                "reasons": list(result.reasons),
                "statistics": _statistics(result, thresholds),
                "n_votes": result.n_votes,
            }
            if flag is None:
                VoterFlag.objects.create(voter=voter, flagged_at=now, excluded=True, **fields)
                created += 1
            else:
                VoterFlag.objects.filter(id=flag.id).update(updated_at=now, **fields)
    return FlagUpdate(
        voters_tested=len(results),
        flagged=flagged,
        created=created,
        cleared=cleared,
        excluded=VoterFlag.objects.filter(excluded=True).count(),
    )


def voter_flag_review(
    *, flag: VoterFlag, excluded: bool, user: AbstractBaseUser | AnonymousUser | None
) -> VoterFlag:
    """Staff's decision on a flag: ``excluded=False`` counts the voter's votes again. The
    detector never overrides a reviewed flag."""
    flag.excluded = excluded
    flag.reviewed_by = user if isinstance(user, AbstractBaseUser) else None  # type: ignore[assignment]
    flag.reviewed_at = timezone.now()
    flag.save(update_fields=["excluded", "reviewed_by", "reviewed_at", "updated_at"])
    return flag
