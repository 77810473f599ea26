"""``manage.py integrity_report``: how many fake votes move the leaderboard, and what the voter
anomaly detector catches.

    python manage.py integrity_report [--simulate] [--models N] [--voters N] [--mean-votes X]
        [--adversaries N] [--adversary-votes N] [--seed S] [--alpha A] [--json]

On the database (default), the pairs are those of the board fitted on the votes that count
(valid, voter not excluded, prompts down-sampled); ``--simulate`` builds an arena of ``--models``
models with known, evenly spread strengths and honest Bradley-Terry voters instead. Either way
the injection trials simulate honest voters plus ``--adversaries`` voters of each adversarial
kind on the board's strengths and run the detector over them. See docs/integrity.md.
"""

from __future__ import annotations

import json
import textwrap
from typing import Any

import numpy as np
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from leaderboard.engine.anomaly import Thresholds, cell_counts
from leaderboard.management.commands.rank import non_negative_float, positive_int
from leaderboard.pipeline import battles as battle_data
from leaderboard.pipeline.flags import anomaly_thresholds
from leaderboard.pipeline.integrity import (
    ADVERSARY_KINDS,
    ATTACKER_MODEL,
    HONEST,
    injection_report,
    leaderboard_strengths,
    pair_report,
    simulate_arena,
)

# --simulate: true strengths evenly spread over this many natural-log units (about 520 rating
# points between the best and the worst model).
SIMULATED_SPREAD = 3.0


def database_cells() -> tuple[tuple[str, ...], np.ndarray]:
    """The model names and the cell counts of the votes the leaderboard counts."""
    names, index = battle_data.model_names()
    votes = battle_data.valid_votes()
    downsampling = battle_data.downsampling_plan(
        votes, percentile=settings.ARENA_DEDUP_PERCENTILE, seed=settings.ARENA_DEDUP_SEED
    )
    data = battle_data.battles_aggregated(votes, names, index, downsampling=downsampling)
    return tuple(names), cell_counts(data.model_a, data.model_b, data.outcome, len(names))


def build_report(options: dict[str, Any], thresholds: Thresholds) -> dict[str, Any]:
    rng = np.random.default_rng(options["seed"])
    if options["simulate"]:
        n = options["models"]
        strengths = np.linspace(SIMULATED_SPREAD / 2, -SIMULATED_SPREAD / 2, n)
        names = tuple(f"model-{i:02d}" for i in range(n))
        honest = simulate_arena(
            rng, strengths, honest_voters=options["voters"], mean_votes=options["mean_votes"]
        )
        cells = cell_counts(honest.model_a, honest.model_b, honest.outcome, n)
        source = {
            "kind": "simulation",
            "models": n,
            "true_strengths": [round(float(s), 4) for s in strengths],
            "honest_voters": options["voters"],
            "votes": int(cells.sum()),
        }
    else:
        names, cells = database_cells()
        if int(cells.sum()) == 0 or len(names) < 2:
            raise CommandError("no votes count yet: nothing to report (try --simulate)")
        strengths = leaderboard_strengths(cells, len(names))
        source = {"kind": "database", "models": len(names), "votes": int(cells.sum())}
    pairs = pair_report(cells, names, thresholds)
    # The injection trial pushes the second model over the first, as the pair table's top row.
    top = [names.index(pairs[0]["upper"]), names.index(pairs[0]["lower"])] if pairs else None
    injection = injection_report(
        rng,
        np.asarray(strengths, np.float64),
        thresholds,
        honest_voters=options["voters"],
        mean_votes=options["mean_votes"],
        adversaries=dict.fromkeys(ADVERSARY_KINDS, options["adversaries"]),
        adversary_votes=options["adversary_votes"],
        pair=(top[0], top[1]) if top else None,
    )
    return {
        "source": source,
        "seed": options["seed"],
        "thresholds": {
            "alpha": thresholds.alpha,
            "burst_votes": thresholds.burst_votes,
            "burst_seconds": thresholds.burst_seconds,
            "side_min_votes": thresholds.side_min_votes,
        },
        "attacker_model": ATTACKER_MODEL,
        "pairs": pairs,
        "injection": injection,
    }


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}%"


def render_text(report: dict[str, Any]) -> str:
    source, t = report["source"], report["thresholds"]
    what = (
        f"simulated arena, {source['models']} models, {source['honest_voters']} honest voters"
        if source["kind"] == "simulation"
        else f"database, {source['models']} models"
    )
    lines = [
        f"Integrity report: {what}, {source['votes']:,} votes counted, seed {report['seed']}",
        f"Detector: alpha {t['alpha']:g}, burst > {t['burst_votes']} votes in "
        f"{t['burst_seconds']:g} s, side test from {t['side_min_votes']} decisive votes",
        "",
        "Fake votes needed to swap adjacent models (the same votes with the detector on, spread",
        "over identities; votes/id: what the first identity can cast, later ones a little more)",
        *textwrap.wrap(f"Attacker model: {report['attacker_model']}", 96),
        "",
    ]
    header = ("upper", "lower", "gap", "battles", "votes (off)", "identities (on)", "votes/id")
    rows = [
        (
            p["upper"],
            p["lower"],
            f"{p['rating_upper'] - p['rating_lower']:.1f}",
            f"{p['battles_between']:,}",
            f"{p['votes_to_swap']:,}",
            "never" if p["identities_to_swap"] is None else f"{p['identities_to_swap']:,}",
            "-" if p["votes_per_identity"] is None else str(p["votes_per_identity"]),
        )
        for p in report["pairs"]
    ]
    lines += _table(header, rows, left=2)
    injection = report["injection"]
    setup = injection["setup"]
    lines += [
        "",
        f"Simulated injection: {setup['honest_voters']} honest voters (mean "
        f"{setup['mean_votes']:g} votes), {sum(setup['adversaries'].values())} adversaries "
        f"casting {setup['adversary_votes']} votes each",
        "",
    ]
    header = ("kind", "voters", "flagged", "flagged %", "votes", "excluded %", "flagged after")
    kinds = injection["kinds"]
    rows = [
        (
            kind,
            f"{k['voters']:,}",
            f"{k['flagged']:,}",
            _percent(k["flagged_share"]),
            f"{k['votes']:,}",
            _percent(k["votes_excluded_share"]),
            "-" if k["median_flagged_after"] is None else f"{k['median_flagged_after']:g}",
        )
        for kind, k in sorted(kinds.items(), key=lambda item: item[0] != HONEST)
    ]
    lines += _table(header, rows, left=1)
    lines += [
        "",
        f"Injected votes caught: {_percent(injection['injected_caught'])} of "
        f"{injection['injected_votes']:,}",
        f"False-positive rate (honest voters flagged): {_percent(injection['false_positive_rate'])}"
        f" ({_percent(injection['honest_votes_excluded'])} of honest votes excluded)",
        "(flagged after: median number of the voter's votes at which it was flagged)",
    ]
    return "\n".join(lines)


def _table(header: tuple[str, ...], rows: list[tuple[str, ...]], *, left: int) -> list[str]:
    """Aligned columns: the first ``left`` columns left-aligned, numbers right-aligned."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: tuple[str, ...]) -> str:
        return "  ".join(
            c.ljust(w) if i < left else c.rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    return [line(header)] + [line(r) for r in rows]


class Command(BaseCommand):
    help = "Votes needed to swap adjacent models, and what the voter anomaly detector catches."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--simulate", action="store_true", help="a simulated arena")
        parser.add_argument("--models", type=positive_int, default=8, help="--simulate: models")
        parser.add_argument("--voters", type=positive_int, default=2000, help="honest voters")
        parser.add_argument(
            "--mean-votes", type=non_negative_float, default=10.0, help="votes per honest voter"
        )
        parser.add_argument(
            "--adversaries", type=int, default=10, help="adversaries of each kind (0: none)"
        )
        parser.add_argument(
            "--adversary-votes", type=positive_int, default=40, help="votes per adversary"
        )
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--alpha", type=float, help="level (default ARENA_ANOMALY_ALPHA)")
        parser.add_argument("--json", action="store_true", help="print JSON")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["simulate"] and options["models"] < 2:
            raise CommandError("--models: at least 2")
        if options["mean_votes"] < 1:
            raise CommandError("--mean-votes: at least 1")
        if options["adversaries"] < 0:
            raise CommandError("--adversaries: at least 0")
        thresholds = anomaly_thresholds()
        if options["alpha"] is not None:
            if not 0 < options["alpha"] < 1:
                raise CommandError("--alpha: must be in (0, 1)")
            thresholds = Thresholds(
                alpha=options["alpha"],
                burst_votes=thresholds.burst_votes,
                burst_seconds=thresholds.burst_seconds,
                side_min_votes=thresholds.side_min_votes,
            )
        report = build_report(options, thresholds)
        if options["json"]:
            self.stdout.write(json.dumps(report, indent=2))
        else:
            self.stdout.write(render_text(report))
