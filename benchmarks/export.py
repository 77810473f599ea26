"""Speed and peak memory of ``export_preferences`` on a large generated database.

    python benchmarks/export.py                 # 1,000,000 votes (generation takes minutes once)
    python benchmarks/export.py --votes 20000   # a quick run

The votes go into a separate SQLite file (``var/bench-export-<N>.sqlite3``, kept and reused by
later runs; ``--db`` to choose another), built with ``migrate`` and ``bulk_create``: two models
per battle out of 20, every outcome, one turn in five a follow-up, a prompt of about 120
characters and answers of about 700, some markdown. Each export then runs as
``manage.py export_preferences`` in its own process, with 1 and with 2 export processes
(``--workers``): the figures are its wall time (Django start-up included), the peak resident set
of its largest process (``wait4``'s ``ru_maxrss``) and the peak memory of all its processes
together (their proportional set sizes summed, sampled every 50 ms), which the memory goal is
checked against.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
BATCH = 10_000
BASE = 20_000
N_MODELS = 20
CASES = [("arena", "jsonl"), ("arena", "parquet"), ("trl-reward", "parquet"), ("kto", "jsonl")]
LIMITS = {"records_per_s": 20_000, "peak_rss_mb": 300}

_VOCABULARY = (
    "the model answers with a short list of points about rivers mountains code tests data "
    "python sorting graphs history music and a summary at the end of each paragraph"
)
_WORDS = tuple(_VOCABULARY.split())


def _text(rng: Any, n_words: int, markdown: bool) -> str:
    words = [_WORDS[i] for i in rng.integers(0, len(_WORDS), n_words)]
    if not markdown:
        return " ".join(words)
    third = n_words // 3
    return (
        "## Answer\n\n" + " ".join(words[:third]) + "\n\n- **" + " ".join(words[third : 2 * third])
        + "**\n- " + " ".join(words[2 * third :])
    )  # fmt: skip


def generate(n_votes: int) -> None:
    """Fill the (migrated, empty) database with ``n_votes`` battles and votes.

    ``BASE`` distinct votes are made through the ORM; the rest are copies of them made in SQL
    (``INSERT ... SELECT``, new battle ids, the same content): the export reads every row the
    same way whatever it holds, and a million ORM inserts would take a quarter of an hour.
    """
    import numpy as np

    from arena.models import ArenaModel, Battle, Vote

    rng = np.random.default_rng(7)
    models = ArenaModel.objects.bulk_create(
        [ArenaModel(name=f"model-{i:02d}", display_name=f"Model {i}", backend="openai")
         for i in range(N_MODELS)]
    )  # fmt: skip
    outcomes = ["model_a", "model_b", "tie", "both_bad"]
    start = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    made, started, base = 0, time.monotonic(), min(BASE, n_votes)
    while made < base:
        size = min(BATCH, base - made)
        battles, votes = [], []
        for k in range(made, made + size):
            i, j = rng.choice(N_MODELS, 2, replace=False)
            turns = 2 if k % 5 == 0 else 1
            prompts = [_text(rng, 20, False) for _ in range(turns)]
            convs = []
            for side in range(2):
                conv = []
                for prompt in prompts:
                    answer = _text(rng, 110, markdown=(k + side) % 3 == 0)
                    conv += [{"role": "user", "content": prompt},
                             {"role": "assistant", "content": answer}]  # fmt: skip
                convs.append(conv)
            when = start + dt.timedelta(seconds=30 * k)
            visitor = f"{k % 50_000:032x}"
            battle = Battle(model_a=models[i], model_b=models[j], visitor_id=visitor,
                            created_at=when)  # fmt: skip
            battles.append(battle)
            votes.append(Vote(
                battle=battle, model_a=models[i], model_b=models[j], outcome=outcomes[k % 4],
                visitor_id=visitor, conversation_a=convs[0], conversation_b=convs[1],
                language="en" if k % 4 else "de", turns=turns,
                prompt_chars=sum(map(len, prompts)), has_code=k % 7 == 0,
                tokens_a=110 * turns, tokens_b=110 * turns,
                style_a={"headers": 1, "lists": 2, "bold": 1} if k % 3 == 0 else {},
                style_b={"headers": 1, "lists": 2, "bold": 1} if (k + 1) % 3 == 0 else {},
                battle_started_at=when, created_at=when,
            ))  # fmt: skip
        Battle.objects.bulk_create(battles)
        Vote.objects.bulk_create(votes)
        made += size
        rate = made / (time.monotonic() - started)
        print(f"\rgenerated {made:,}/{n_votes:,} votes ({rate:,.0f}/s)", end="", file=sys.stderr)
    copy = 0
    while made < n_votes:
        copy += 1
        size = min(base, n_votes - made)
        _copy_votes(copy, size)
        made += size
        rate = made / (time.monotonic() - started)
        print(f"\rgenerated {made:,}/{n_votes:,} votes ({rate:,.0f}/s)", end="", file=sys.stderr)
    print(file=sys.stderr)


def _copy_votes(copy: int, size: int) -> None:
    """``size`` of the ORM-made votes again, with battles of their own (SQLite SQL)."""
    from django.db import connection, transaction

    from arena.models import Battle, Vote

    battle_columns = [f.column for f in Battle._meta.concrete_fields if f.column != "id"]
    vote_columns = [f.column for f in Vote._meta.concrete_fields
                    if f.column not in ("id", "battle_id")]  # fmt: skip
    b_cols, v_cols = ", ".join(battle_columns), ", ".join(vote_columns)
    suffix = f".c{copy}"  # '.' is not in the battle ids' URL-safe alphabet
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {Battle._meta.db_table} (id, {b_cols}) SELECT id || %s, {b_cols} "
            f"FROM {Battle._meta.db_table} WHERE id NOT LIKE '%%.%%' ORDER BY id LIMIT %s",
            [suffix, size],
        )
        cursor.execute(
            f"INSERT INTO {Vote._meta.db_table} (battle_id, {v_cols}) "
            f"SELECT battle_id || %s, {v_cols} FROM {Vote._meta.db_table} "
            f"WHERE battle_id NOT LIKE '%%.%%' ORDER BY battle_id LIMIT %s",
            [suffix, size],
        )


def prepare(db: Path, n_votes: int, env: dict[str, str]) -> None:
    os.environ.update(env)
    import django

    django.setup()
    from django.core.management import call_command

    from arena.models import Vote

    call_command("migrate", verbosity=0)
    have = Vote.objects.count()
    if have == n_votes:
        print(f"reusing {db} ({have:,} votes)", file=sys.stderr)
        return
    if have:
        raise SystemExit(f"{db} holds {have:,} votes, not {n_votes:,}: remove it or pass --db")
    generate(n_votes)


def _tree_pss_kib(root: int) -> int:
    """Proportional set size of ``root`` and every descendant, in KiB: pages shared by forked
    export processes count once in all (RSS would count them once per process)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        todo += children.get(pid, [])
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total


def run_export(fmt: str, file_format: str, workers: int, env: dict[str, str]) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-export-") as tmp:
        command = [sys.executable, str(ROOT / "manage.py"), "export_preferences", "--output",
                   tmp, "--format", fmt, "--file-format", file_format, "--no-progress",
                   "--workers", str(workers)]  # fmt: skip
        started = time.monotonic()
        process = subprocess.Popen(command, cwd=ROOT, env={**os.environ, **env},
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
        peak_pss = 0
        stop = threading.Event()

        def sample() -> None:
            nonlocal peak_pss
            while not stop.wait(0.05):
                peak_pss = max(peak_pss, _tree_pss_kib(process.pid))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.monotonic() - started
        stop.set()
        sampler.join()
        out = process.stdout.read().decode() if process.stdout else ""
        err = process.stderr.read().decode() if process.stderr else ""
        if os.waitstatus_to_exitcode(status) != 0:
            raise SystemExit(f"export failed:\n{err[-3000:]}")
        size = sum(p.stat().st_size for p in Path(tmp).rglob("*") if p.is_file())
    records = int(out.split(" records", 1)[0])
    votes = int(out.split(" from ", 1)[1].split(" votes", 1)[0])
    return {
        "format": fmt,
        "file_format": file_format,
        "workers": workers,
        "votes": votes,
        "records": records,
        "seconds": round(seconds, 2),
        "votes_per_s": round(votes / seconds),
        # The largest single process (Linux reports KiB), and all processes together.
        "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
        "peak_total_pss_mb": round(peak_pss / 1024, 1),
        "output_mb": round(size / 2**20, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--votes", type=int, default=1_000_000)
    parser.add_argument("--db", type=Path, help="SQLite file (default var/bench-export-N.sqlite3)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--workers", default="1,2", help="export processes to compare (1,2)")
    args = parser.parse_args()
    db = args.db or ROOT / "var" / f"bench-export-{args.votes}.sqlite3"
    db.parent.mkdir(parents=True, exist_ok=True)
    env = {"DATABASE_URL": f"sqlite:///{db}", "ARENA_DEMO": "1",
           "DJANGO_SETTINGS_MODULE": "arena.settings"}  # fmt: skip
    prepare(db, args.votes, env)
    results = [
        run_export(fmt, file_format, int(workers), env)
        for fmt, file_format in CASES
        for workers in args.workers.split(",")
    ]
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(f"{'format':<12}{'file':<9}{'procs':>6}{'votes':>10}{'records':>10}{'seconds':>9}"
          f"{'votes/s':>10}{'max RSS MB':>12}{'total PSS MB':>14}{'output MB':>11}")  # fmt: skip
    for r in results:
        print(f"{r['format']:<12}{r['file_format']:<9}{r['workers']:>6}{r['votes']:>10,}"
              f"{r['records']:>10,}{r['seconds']:>9}{r['votes_per_s']:>10,}"
              f"{r['peak_rss_mb']:>12}{r['peak_total_pss_mb']:>14}"
              f"{r['output_mb']:>11}")  # fmt: skip
    for procs in sorted({r["workers"] for r in results}):
        rows = [r for r in results if r["workers"] == procs]
        slow = [r["format"] + "/" + r["file_format"] for r in rows
                if r["votes_per_s"] < LIMITS["records_per_s"]]  # fmt: skip
        heavy = [r["format"] + "/" + r["file_format"] for r in rows
                 if r["peak_total_pss_mb"] > LIMITS["peak_rss_mb"]]  # fmt: skip
        print(f"{procs} process(es): >= {LIMITS['records_per_s']:,} votes/s "
              f"{'met' if not slow else 'MISSED by ' + ', '.join(slow)}; "
              f"<= {LIMITS['peak_rss_mb']} MB all processes together "
              f"{'met' if not heavy else 'MISSED by ' + ', '.join(heavy)}")  # fmt: skip


if __name__ == "__main__":
    main()
