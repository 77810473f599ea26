"""``manage.py rank``: a leaderboard from a battle log file, without touching the database.

    python manage.py rank --input FILE [--method bt|elo] [--anony-only] [--l2 X]
        [--ci bootstrap|sandwich|none] [--rounds N] [--seed S] [--style-control]
        [--output json|table]

``--output json`` prints one JSON array of every model, by group (biggest first) and best first
within it, with the keys ``model``, ``group``, ``rank``, ``rating``, ``lower``, ``upper``,
``battles``, ``rated`` and ``note``: a model that cannot be rated (not in a strongly connected set
of two or more models, e.g. only wins) has ``rated: false``, null group, rank and numbers, and the
reason in ``note``; it is also named on stderr. Ranks count within a group.
Bad input ends in one line.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from typing import Any, Protocol

import numpy as np
from django.core.management.base import BaseCommand, CommandError, CommandParser

from leaderboard.data.formats.reader import read_battle_log
from leaderboard.engine.ratings import ConvergenceError, Leaderboard, compute_leaderboard

# Progress lines go to stderr when a bootstrap is expected to take more than a moment.
_PROGRESS_WORK = 50_000_000


class Writer(Protocol):
    """Where output goes: a text stream or Django's OutputWrapper."""

    def write(self, text: str, /) -> object: ...


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def non_negative_float(text: str) -> float:
    """argparse type: a finite float >= 0."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"expected a non-negative number, got {text!r}")
    return value


def rank_file(
    *,
    input: str,
    method: str = "bt",
    anony_only: bool = False,
    l2: float = 0.0,
    ci: str = "bootstrap",
    rounds: int = 1000,
    seed: int = 0,
    style_control: bool = False,
    output: str = "table",
    stdout: Writer,
    stderr: Writer,
) -> Leaderboard:
    """Read ``input``, compute the leaderboard and write it; the command's whole job.

    Raises
    ------
    ValueError
        Bad file or options (:class:`BattleLogError` included); the message is one line.
    ConvergenceError
        A fit did not converge.
    """
    started = time.perf_counter()
    battles = read_battle_log(input, anony_only=anony_only, require_style=style_control)
    if not len(battles):
        raise ValueError(f"{input}: no battles to rank")
    stderr.write(
        f"read {len(battles)} battles among {len(battles.names)} models "
        f"in {time.perf_counter() - started:.2f} s\n"
    )
    work = len(battles) * rounds * (100 if method == "elo" or style_control else 1)
    step = max(rounds // 10, 1)

    def progress(done: int, total: int) -> None:
        if done % step < 25 or done == total:  # rounds finish in blocks of 25
            stderr.write(f"bootstrap: {done}/{total} rounds\n")

    board = compute_leaderboard(
        battles,
        method=method,
        ci=ci,
        rounds=rounds,
        l2=l2,
        style_control=style_control,
        rng=np.random.default_rng(seed),
        progress=progress if ci == "bootstrap" and work >= _PROGRESS_WORK else None,
    )
    for row in board.rows:
        if row.rank is None:
            stderr.write(f"not rated: {row.model} ({row.note}, {row.battles} battles)\n")
    if output == "json":
        # One write: Django's OutputWrapper ends every write with a newline.
        stdout.write(json.dumps(board.records(), indent=2) + "\n")
    else:
        stdout.write(format_table(board))
    return board


def format_table(board: Leaderboard) -> str:
    """The leaderboard as a fixed-width text table: group, rank within it, numbers."""
    width = max([len(r.model) for r in board.rows] + [5])
    head = (
        f"{'group':>5}  {'rank':>4}  {'model':<{width}}  {'rating':>8}  {'lower':>8}  {'upper':>8}"
    )
    lines = [head + "  battles"]
    for r in board.rows:
        if r.rank is None:
            cells = f"{'-':>5}  {'-':>4}  {r.model:<{width}}  {'-':>8}  {'-':>8}  {'-':>8}"
            lines.append(f"{cells}  {r.battles:>7}  not rated: {r.note}")
            continue
        cells = f"{r.group:>5}  {r.rank:>4}  {r.model:<{width}}  {r.rating:>8.1f}  {r.lower:>8.1f}"
        lines.append(cells + f"  {r.upper:>8.1f}  {r.battles:>7}")
    for c in board.style:
        if c.note:
            lines.append(f"style {c.name}: {c.note}")
        else:
            lines.append(f"style {c.name}: {c.value:+.4f} [{c.lower:+.4f}, {c.upper:+.4f}]")
    if board.n_groups > 1:
        lines.append(
            f"note: {board.n_groups} groups of models; "
            "ratings and ranks compare only within a group"
        )
    return "\n".join(lines) + "\n"


class Command(BaseCommand):
    help = "Rank models from a FastChat/LMSYS battle log (JSON, JSON Lines, Parquet or CSV)."
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--input", required=True, help="battle log file")
        parser.add_argument("--method", choices=("bt", "elo"), default="bt")
        parser.add_argument("--anony-only", action="store_true", help="anonymous battles only")
        parser.add_argument("--l2", type=non_negative_float, default=0.0, help="L2 penalty")
        parser.add_argument("--ci", choices=("bootstrap", "sandwich", "none"), default="bootstrap")
        parser.add_argument("--rounds", type=positive_int, default=1000, help="bootstrap rounds")
        parser.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
        parser.add_argument("--style-control", action="store_true")
        parser.add_argument("--output", choices=("json", "table"), default="table")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            rank_file(
                input=options["input"],
                method=options["method"],
                anony_only=options["anony_only"],
                l2=options["l2"],
                ci=options["ci"],
                rounds=options["rounds"],
                seed=options["seed"],
                style_control=options["style_control"],
                output=options["output"],
                stdout=self.stdout,
                stderr=self.stderr,
            )
        except (ValueError, ConvergenceError, OSError) as exc:
            message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise CommandError(message) from exc
