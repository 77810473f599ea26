"""Voter flags: the anomaly detector run over the stored votes, and staff review of its verdicts.

The tests themselves are pure (leaderboard/engine/anomaly.py); this module reads the votes they
need, records a :class:`~leaderboard.models.VoterFlag` per flagged voter and applies staff
decisions. A flag with ``excluded`` takes every vote of that voter out of ``valid_votes()``, hence
out of the ratings, the exports and the sampling plan; nothing is deleted.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db import transaction
from django.db.models import Count
from django.utils import timezone

from arena.models import Vote
from leaderboard.engine.anomaly import Thresholds, VoterResult, cell_counts, detect_voters
from leaderboard.engine.pairs import OUTCOME_CODES
from leaderboard.models import VoterFlag
from leaderboard.pipeline import battles as battle_data

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
    # Source -> (voters tested, voters flagged now), for the sources that had a voter tested.
    per_source: dict[str, tuple[int, int]] = field(default_factory=dict)


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


# An imported log's judge is the log's own label for a voter. A label that holds more than this
# share of its log's valid votes names no one person (GenAI-Arena gives every record the judge
# "arena_user_::1", its server's loopback address), and without it no consensus is left to test
# it against: it is not tested. The live arena makes its own pseudonyms, so the rule is for
# imports only.
SHARED_JUDGE_SHARE = 0.5


def is_imported(source: str) -> bool:
    return source.startswith("import:")


@dataclass(frozen=True)
class SourceVoters:
    """The detector's population in one source (``Vote.source``): the pseudonyms it tests, and
    those it leaves untested because one label stands for most of an imported log."""

    source: str
    valid_votes: int
    tested: tuple[str, ...]
    shared: tuple[str, ...]


def voters_by_source() -> list[SourceVoters]:
    """Each source's voters with ``TESTED_MIN_VOTES`` valid votes, split into tested and shared.

    A vote without a pseudonym (an imported log without judges) belongs to no voter and is
    never tested; it still counts.
    """
    valid = Vote.objects.filter(is_valid=True)
    totals = dict(valid.values_list("source").annotate(n=Count("id")).order_by())
    counts = (
        valid.exclude(visitor_id="")
        .values_list("source", "visitor_id")
        .annotate(n=Count("id"))
        .order_by()
        .filter(n__gte=TESTED_MIN_VOTES)
    )
    tested: dict[str, list[str]] = {source: [] for source in totals}
    shared: dict[str, list[str]] = {source: [] for source in totals}
    for source, voter, n in counts:
        untestable = is_imported(source) and n > SHARED_JUDGE_SHARE * totals[source]
        (shared if untestable else tested)[source].append(voter)
    return [
        SourceVoters(source, totals[source], tuple(sorted(tested[source])),
                     tuple(sorted(shared[source])))
        for source in sorted(totals)
    ]  # fmt: skip


def voter_summary() -> list[dict[str, Any]]:
    """Per source, what the transparency section shows: valid votes, voters tested, pseudonyms
    left untested as an imported log's shared judge, voters flagged (now, staff-reviewed ones
    included), voters excluded and their valid votes, which do not count."""
    flags = dict(VoterFlag.objects.values_list("voter", "excluded"))
    excluded_votes = dict(
        Vote.objects.filter(is_valid=True, visitor_id__in=battle_data.excluded_voters())
        .values_list("source")
        .annotate(n=Count("id"))
        .order_by()
    )
    return [
        {
            "source": population.source,
            "valid_votes": population.valid_votes,
            "voters_tested": len(population.tested),
            "shared_judges": len(population.shared),
            "flagged": sum(voter in flags for voter in population.tested),
            "excluded_voters": sum(flags.get(voter, False) for voter in population.tested),
            "votes_excluded": excluded_votes.get(population.source, 0),
        }
        for population in voters_by_source()
    ]


def _source_results(
    population: SourceVoters,
    thresholds: Thresholds,
    names: list[str],
    index: dict[int, int],
    excluded: set[str],
) -> list[VoterResult]:
    """The detector over one source: its voters against the consensus of its own counted votes
    (a live arena and an imported log are different crowds, often of different models)."""
    cells = list(
        battle_data.valid_votes()
        .filter(source=population.source)
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
    label = {voter: k for k, voter in enumerate(population.tested)}
    valid = Vote.objects.filter(is_valid=True, source=population.source).exclude(visitor_id="")
    # In SQL, the voters with enough votes (most visitors vote once or twice); in Python, less
    # the shared judges.
    enough = (
        valid.values("visitor_id")
        .annotate(n=Count("id"))
        .order_by()
        .filter(n__gte=TESTED_MIN_VOTES)
        .values("visitor_id")
    )
    rows = [
        row
        for row in valid.filter(visitor_id__in=enough)
        .order_by()
        .values_list("visitor_id", "model_a_id", "model_b_id", "outcome", "created_at")
        .iterator(chunk_size=5000)
        if row[0] in label
    ]
    if not rows:
        return []
    return detect_voters(
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


def voter_results(
    thresholds: Thresholds,
) -> tuple[list[str], list[VoterResult], dict[str, str]]:
    """Run the detector over the valid votes, source by source: the tested voters' pseudonyms,
    their results (``voter`` indexes the pseudonyms) and each pseudonym's source.

    Each source's consensus is fitted on its votes that count (valid, voter not excluded), so an
    excluded attacker no longer drags it; the voters tested are every voter with
    ``TESTED_MIN_VOTES`` valid votes in the source, excluded ones included (their statistics stay
    current for review), less an imported log's shared judge (:data:`SHARED_JUDGE_SHARE`).
    """
    names, index = battle_data.model_names()
    if len(names) < 2:
        return [], [], {}
    excluded = set(battle_data.excluded_voters().values_list("voter", flat=True))
    voters: list[str] = []
    results: list[VoterResult] = []
    source_of: dict[str, str] = {}
    for population in voters_by_source():
        found = _source_results(population, thresholds, names, index, excluded)
        offset = len(voters)
        voters.extend(population.tested)
        source_of.update((voter, population.source) for voter in population.tested)
        results.extend(replace(result, voter=result.voter + offset) for result in found)
    return voters, results, source_of


def voter_flags_update(*, thresholds: Thresholds | None = None) -> FlagUpdate:
    """Run the detector and record its verdicts.

    A newly flagged voter gets a flag that excludes their votes. A flag already there has its
    reasons and statistics refreshed; its ``excluded`` changes only by staff review. An
    unreviewed flag that the detector no longer supports (the consensus moved, or the voter is
    no longer tested) is removed.
    """
    thresholds = thresholds or anomaly_thresholds()
    voters, results, source_of = voter_results(thresholds)
    now = timezone.now()
    created = flagged = 0
    per_source: dict[str, list[int]] = {}
    with transaction.atomic():
        existing = {flag.voter: flag for flag in VoterFlag.objects.select_for_update()}
        supported: set[str] = set()
        for result in results:
            voter = voters[result.voter]
            counts = per_source.setdefault(source_of[voter], [0, 0])
            counts[0] += 1
            if not result.flagged:
                continue
            counts[1] += 1
            flagged += 1
            supported.add(voter)
            fields = {
                "reasons": list(result.reasons),
                "statistics": {"source": source_of[voter], **_statistics(result, thresholds)},
                "n_votes": result.n_votes,
            }
            flag = existing.get(voter)
            if flag is None:
                VoterFlag.objects.create(voter=voter, flagged_at=now, excluded=True, **fields)
                created += 1
            else:
                VoterFlag.objects.filter(id=flag.id).update(updated_at=now, **fields)
        stale = [
            flag.id
            for voter, flag in existing.items()
            if voter not in supported and flag.reviewed_at is None
        ]
        VoterFlag.objects.filter(id__in=stale).delete()
    return FlagUpdate(
        voters_tested=len(results),
        flagged=flagged,
        created=created,
        cleared=len(stale),
        excluded=VoterFlag.objects.filter(excluded=True).count(),
        per_source={source: (tested, n) for source, (tested, n) in sorted(per_source.items())},
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
