"""Reading and importing battle logs: the reader per format, `rank` end to end, arena-rank on the
same file, and `import_battles` into SQLite (and PostgreSQL when ``DATABASE_URL`` names one: a
throwaway database, as the battles stay in it).

    python benchmarks/reading.py                 # 1M battles to read and rank, 200k to import
    python benchmarks/reading.py --quick         # 100k and 20k (seconds)
    python benchmarks/reading.py --battles 10000000 --no-peers --no-import

The logs are generated (seeded; the generator of benchmarks/ratings.py: 100 models, 20% ties)
without conversation texts, in the columns ``model_a``, ``model_b``, ``winner``, ``tstamp`` and
``anony``, as Parquet, JSON Lines and a JSON array. Every case is its own process; its time is
wall-clock (CPU time beside it where a shared machine makes the wall time noisy) and its memory
the process's peak resident set. ``rank`` is timed from the command
line (process start, Django set-up and imports included). arena-rank (lmarena) is timed in its
own process from after its imports: pandas reads the Parquet file, ``PairDataset.from_pandas``,
then ``BradleyTerry.compute_ratings_and_cis(ci_method="sandwich")`` (JAX compiles on this first
call, as it does for a user). An import starts from an empty, migrated database; its rate counts
the whole command (start included); the second import of the same file must add nothing. For a
PostgreSQL server on this machine the server's CPU time for the import is printed beside it (from
/proc: its postmaster and the backends it has reaped): that, not the command's CPU, is what
bounds the rate there.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.append(str(ROOT / "benchmarks"))  # after the project: benchmarks/leaderboard.py

from procstats import postgres_cpu_seconds, postgres_postmaster  # noqa: E402


def write_logs(n: int, folder: Path, formats: tuple[str, ...]) -> dict[str, Path]:
    """The seeded log as Parquet, JSON Lines and JSON (written by pyarrow and orjson)."""
    import numpy as np
    import orjson
    import pyarrow as pa
    import pyarrow.parquet as pq
    from ratings import generate

    a, b, outcome = generate(n)
    rng = np.random.default_rng(1)
    names = np.array([f"model-{i:03d}" for i in range(100)], dtype=object)
    table = pa.table({
        "model_a": names[a], "model_b": names[b],
        "winner": np.array(["model_a", "model_b", "tie"], dtype=object)[outcome],
        "tstamp": 1.7e9 + np.arange(n, dtype=np.float64),
        "anony": rng.random(n) < 0.8,
    })  # fmt: skip
    paths = {}
    if "parquet" in formats:
        paths["parquet"] = folder / f"battles-{n}.parquet"
        pq.write_table(table, paths["parquet"])
    if {"jsonl", "json"} & set(formats):
        step = 200_000
        for fmt in ("jsonl", "json"):
            if fmt not in formats:
                continue
            paths[fmt] = folder / f"battles-{n}.{fmt}"
            with paths[fmt].open("wb") as fh:
                fh.write(b"[" if fmt == "json" else b"")
                for start in range(0, n, step):
                    rows = table.slice(start, step).to_pylist()
                    sep = b",\n" if fmt == "json" else b"\n"
                    body = sep.join(orjson.dumps(r) for r in rows)
                    fh.write((sep if fmt == "json" and start else b"") + body)
                    fh.write(b"\n" if fmt == "jsonl" else b"")
                fh.write(b"]" if fmt == "json" else b"")
    return paths


def measured(command: list[str], env: dict[str, str] | None = None) -> dict[str, Any]:
    """Wall time and peak memory of one child process (os.wait4 gives the child's own)."""
    started = time.perf_counter()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return {"seconds": seconds, "peak_mb": usage.ru_maxrss / 1024, "rc": proc.returncode,
                "cpu_s": usage.ru_utime + usage.ru_stime,
                "stdout": out.read().decode(), "stderr": err.read().decode()}  # fmt: skip


def case_read(path: str) -> dict[str, Any]:
    from leaderboard.data.formats.reader import read_battle_log

    started = time.perf_counter()
    battles = read_battle_log(path)
    return {"battles": len(battles), "read_s": time.perf_counter() - started}


def case_arena_rank(path: str) -> dict[str, Any]:
    import numpy as np
    import pandas as pd
    from arena_rank.models.bradley_terry import BradleyTerry
    from arena_rank.utils.data_utils import PairDataset

    started = time.perf_counter()
    df = pd.read_parquet(path, columns=["model_a", "model_b", "winner"])
    dataset = PairDataset.from_pandas(df)
    prepared = time.perf_counter()
    out = BradleyTerry(n_competitors=len(dataset.competitors)).compute_ratings_and_cis(
        dataset, ci_method="sandwich"
    )
    np.asarray(out["rating_upper"])  # JAX is lazy
    done = time.perf_counter()
    return {"prep_s": prepared - started, "sandwich_s": done - prepared, "total_s": done - started}


def in_child(case: str, path: Path) -> dict[str, Any]:
    got = measured([sys.executable, __file__, "--case", case, "--file", str(path)])
    if got["rc"] != 0:
        return {"error": (got["stderr"].strip().splitlines() or ["failed"])[-1]}
    return {**json.loads(got["stdout"].strip().splitlines()[-1]), "peak_mb": got["peak_mb"]}


def manage(*args: str, env: dict[str, str]) -> dict[str, Any]:
    got = measured([sys.executable, str(ROOT / "manage.py"), *args], env=env)
    if got["rc"] != 0:
        raise SystemExit(f"manage.py {' '.join(args)} failed: {got['stderr'].strip()[-500:]}")
    return got


def import_rates(path: Path, n: int, database_url: str) -> dict[str, Any]:
    env = {**os.environ, "DATABASE_URL": database_url, "PYTHONPATH": str(ROOT)}
    manage("migrate", "--noinput", "-v0", env=env)
    label = ("--source", f"bench-{time.time_ns()}")  # a database used before adds them anew
    server = postgres_postmaster(database_url) if database_url.startswith("postgres") else None
    server_before = postgres_cpu_seconds(server) if server else 0.0
    first = manage("import_battles", str(path), "--quiet", *label, env=env)
    server_cpu = postgres_cpu_seconds(server) - server_before if server else None
    again = manage("import_battles", str(path), "--quiet", *label, env=env)
    if f"{n} battles imported" not in first["stdout"]:
        raise SystemExit(f"unexpected import output: {first['stdout']}")
    if "0 battles imported" not in again["stdout"]:
        raise SystemExit(f"the second import added battles: {again['stdout']}")
    return {"seconds": first["seconds"], "rate": n / first["seconds"], "peak_mb": first["peak_mb"],
            "cpu_s": first["cpu_s"], "again_s": again["seconds"],
            "server_cpu_s": server_cpu}  # fmt: skip


def server_figure(seconds: float | None, n: int) -> str:
    """The database server's CPU for the import (PostgreSQL on this machine): what bounds the
    rate when the command's own CPU is far below its wall time."""
    if seconds is None:
        return ""
    return f"; server CPU {seconds:.1f} s, {seconds / n * 1e6:.0f} us/battle"


def written(n: int, folder: Path, formats: tuple[str, ...]) -> dict[str, Path]:
    """The logs, written by a child process: a child's peak memory counts its parent's at the
    fork, so this process stays small."""
    done = subprocess.run(
        [sys.executable, __file__, "--case", "write", "--battles", str(n), "--file", str(folder),
         "--formats", ",".join(formats)],
        check=True, capture_output=True, text=True, cwd=ROOT,
    )  # fmt: skip
    return {k: Path(v) for k, v in json.loads(done.stdout.strip().splitlines()[-1]).items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100k battles, 20k imported")
    parser.add_argument("--battles", type=int, default=0, help="battles to read and rank")
    parser.add_argument("--import-battles", type=int, default=0, help="battles to import")
    parser.add_argument("--no-peers", action="store_true", help="skip arena-rank")
    parser.add_argument("--no-import", action="store_true", help="skip the imports")
    parser.add_argument("--no-read", action="store_true", help="only the imports")
    parser.add_argument("--case", choices=("read", "arena_rank", "write"), help=argparse.SUPPRESS)
    parser.add_argument("--file", help=argparse.SUPPRESS)
    parser.add_argument("--formats", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case == "write":
        paths = write_logs(args.battles, Path(args.file), tuple(args.formats.split(",")))
        print(json.dumps({k: str(v) for k, v in paths.items()}))
        return
    if args.case:
        case = case_read if args.case == "read" else case_arena_rank
        print(json.dumps(case(args.file)))
        return
    n = args.battles or (100_000 if args.quick else 1_000_000)
    n_import = args.import_battles or (20_000 if args.quick else 200_000)
    os.environ.setdefault("ARENA_DEMO", "1")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        formats = ("parquet",) if n > 2_000_000 else ("parquet", "jsonl", "json")
        paths = {} if args.no_read else written(n, folder, formats)
        if paths:
            print(f"{n:,} battles, no texts; each line one process (wall time, peak memory)")
        for fmt, path in paths.items():
            got = in_child("read", path)
            print(f"read {fmt:<8} {got.get('read_s', float('nan')):7.2f} s  "
                  f"{got.get('peak_mb', 0):7.0f} MB  {got.get('error', '')}")  # fmt: skip
        for ci in ("bootstrap", "sandwich") if paths else ():
            got = manage("rank", "--input", str(paths["parquet"]), "--ci", ci, "--rounds", "1000",
                         env=env)  # fmt: skip
            print(
                f"rank --ci {ci:<9} {got['seconds']:7.2f} s  {got['peak_mb']:7.0f} MB  "
                f"(python manage.py rank, end to end; CPU {got['cpu_s']:.2f} s)"
            )
        if paths and not args.no_peers:
            got = in_child("arena_rank", paths["parquet"])
            if "error" in got:
                print(f"arena-rank: {got['error']}")
            else:
                print(f"arena-rank read + dataset {got['prep_s']:.2f} s + fit and sandwich "
                      f"{got['sandwich_s']:.2f} s = {got['total_s']:7.2f} s  "
                      f"{got['peak_mb']:7.0f} MB (from after its imports)")  # fmt: skip
        if args.no_import:
            return
        small = written(n_import, folder, ("parquet",))["parquet"]
        targets = {"SQLite": f"sqlite:///{folder / 'import.sqlite3'}"}
        if (os.environ.get("DATABASE_URL") or "").startswith(("postgres://", "postgresql://")):
            targets["PostgreSQL"] = os.environ["DATABASE_URL"]
        for name, url in targets.items():
            got = import_rates(small, n_import, url)
            # CPU time per battle is the figure a loaded machine leaves stable (the server's
            # own, PostgreSQL's, is not in it); the load average says how loaded it was.
            print(f"import {n_import:,} into {name:<10} {got['seconds']:7.2f} s = "
                  f"{got['rate']:8,.0f} battles/s  {got['peak_mb']:5.0f} MB "
                  f"(CPU {got['cpu_s']:.1f} s, {got['cpu_s'] / n_import * 1e6:.0f} us/battle"
                  f"{server_figure(got.get('server_cpu_s'), n_import)}; "
                  f"load {os.getloadavg()[0]:.1f}); "
                  f"again (adds nothing) {got['again_s']:.2f} s")  # fmt: skip


if __name__ == "__main__":
    main()
