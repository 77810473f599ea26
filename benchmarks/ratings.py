"""Speed and memory of the ratings engine against arena-rank and a FastChat-style reference.

    python benchmarks/ratings.py            # 1M and 10M battles (several minutes)
    python benchmarks/ratings.py --quick    # 100k battles, fewer rounds (seconds)

Every case runs in its own process (peak memory is that process's maximum resident set) on the
same generated data: 100 models, strengths N(0, 1), uniformly drawn pairs, 20% ties. Timings start
from integer arrays in memory; reading battle log files is measured separately. Peers:

- arena-rank 0.1.1 (lmarena): ``PairDataset.from_pandas`` (reported as its data preparation),
  ``BradleyTerry.compute_ratings_and_cis(ci_method="sandwich")`` (its sandwich fit), and its
  per-round bootstrap fit ``fit_single_bootstrap_sample`` called in-process (its own bootstrap
  runs a multiprocessing pool after JAX has started threads, which can hang). JAX compiles on
  first use; the sandwich time is of a second, warm call; a bootstrap round re-traces its loss
  (a new partial per call), as it does inside arena-rank's pool, so its time includes that.
- FastChat-style: pivot tables of wins and ties, scikit-learn ``LogisticRegression`` on the
  pair rows, and a bootstrap round that resamples battle rows and redoes both.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
N_MODELS = 100
TIE_RATE = 0.2
WINNERS = np.array(["model_a", "model_b", "tie", "both_bad"])


def generate(n_battles: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    strength = rng.normal(0, 1, N_MODELS)
    a = rng.integers(0, N_MODELS, n_battles, dtype=np.int32)
    b = rng.integers(0, N_MODELS - 1, n_battles, dtype=np.int32)
    b += b >= a
    win = rng.random(n_battles) < 1 / (1 + np.exp(strength[b] - strength[a]))
    outcome = np.where(rng.random(n_battles) < TIE_RATE, 2, np.where(win, 0, 1)).astype(np.int8)
    return a, b, outcome


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    value = fn()
    return time.perf_counter() - start, value


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def case_ours(n: int, rounds: int) -> dict[str, float]:
    from leaderboard.engine import ratings as R

    a, b, o = generate(n)
    t_agg, counts = timed(lambda: R.aggregate_counts(a, b, o, N_MODELS))
    t_fit, theta = timed(lambda: R.fit_bradley_terry(counts))
    t_sw, _ = timed(lambda: R.sandwich_intervals(counts, theta))
    rng = np.random.default_rng(0)
    t_boot, _ = timed(lambda: R.bootstrap_intervals(counts, theta, rng=rng, rounds=rounds))
    return {
        "aggregate_s": t_agg, "fit_s": t_fit, "sandwich_s": t_sw, "bootstrap_s": t_boot,
        "total_s": t_agg + t_fit + t_sw + t_boot, "rounds": rounds, "peak_mb": peak_mb(),
    }  # fmt: skip


def case_style(n: int, rounds: int) -> dict[str, float]:
    from leaderboard.engine import style as S

    a, b, o = generate(n)
    rng = np.random.default_rng(1)
    sa = rng.poisson([300.0, 2.0, 4.0, 3.0], (n, 4)).astype(np.float64)
    sb = rng.poisson([300.0, 2.0, 4.0, 3.0], (n, 4)).astype(np.float64)
    x = S.style_features(sa, sb)
    t_fit, fit = timed(lambda: S.fit_style_control(a, b, o, N_MODELS, x))
    boot_rng = np.random.default_rng(0)
    t_boot, _ = timed(
        lambda: S.style_bootstrap(a, b, o, N_MODELS, x, fit, rng=boot_rng, rounds=rounds)
    )
    return {"fit_s": t_fit, "bootstrap_s": t_boot, "total_s": t_fit + t_boot, "rounds": rounds,
            "peak_mb": peak_mb()}  # fmt: skip


def frame(n: int) -> Any:
    import pandas as pd

    a, b, o = generate(n)
    names = np.array([f"model-{i:03d}" for i in range(N_MODELS)], dtype=object)
    return pd.DataFrame({"model_a": names[a], "model_b": names[b], "winner": WINNERS[o]})


def case_arena_rank(n: int, rounds: int) -> dict[str, float]:
    from arena_rank.models.bradley_terry import BradleyTerry, fit_single_bootstrap_sample
    from arena_rank.utils.data_utils import PairDataset

    df = frame(n)
    t_prep, dataset = timed(lambda: PairDataset.from_pandas(df))

    def sandwich() -> Any:
        out = BradleyTerry(n_competitors=N_MODELS).compute_ratings_and_cis(
            dataset, ci_method="sandwich"
        )
        return np.asarray(out["rating_upper"])  # forces JAX to finish

    t_cold, _ = timed(sandwich)
    t_warm, _ = timed(sandwich)
    model = BradleyTerry(n_competitors=N_MODELS)
    counts = np.asarray(dataset.counts)
    rng = np.random.default_rng(0)
    samples = rng.multinomial(int(counts.sum()), counts / counts.sum(), size=rounds + 1)
    times = []
    for row in samples.astype(np.float64):
        t, _ = timed(
            lambda r=row: np.asarray(fit_single_bootstrap_sample(r, model, dataset)["ratings"])
        )
        times.append(t)
    return {"prep_s": t_prep, "sandwich_cold_s": t_cold, "sandwich_s": t_warm,
            "round_s": float(np.mean(times[1:])), "peak_mb": peak_mb()}  # fmt: skip


def fastchat_fit(df: Any) -> np.ndarray:
    """FastChat's pivot-table Bradley-Terry (ties as one win each way, wins doubled)."""
    import pandas as pd
    from sklearn.linear_model import LogisticRegression

    def pivot(rows: Any) -> Any:
        return pd.pivot_table(
            rows, index="model_a", columns="model_b", aggfunc="size", fill_value=0
        )

    win_a = pivot(df[df["winner"] == "model_a"])
    tie = pivot(df[df["winner"].isin(["tie", "both_bad"])])
    win_b = pivot(df[df["winner"] == "model_b"])
    wins = win_a * 2 + win_b.T * 2 + tie + tie.T
    models = list(wins.index)
    w = wins.to_numpy(dtype=np.float64)
    p = len(models)
    i, j = np.nonzero(~np.eye(p, dtype=bool))
    x = np.zeros((2 * i.size, p))
    rows = np.arange(i.size)
    for block in (0, i.size):
        x[block + rows, i] = np.log(10)
        x[block + rows, j] = -np.log(10)
    y = np.r_[np.ones(i.size), np.zeros(i.size)]
    weight = np.r_[w[i, j], w[j, i]]
    lr = LogisticRegression(fit_intercept=False, C=1e6, tol=1e-6, max_iter=1000)
    lr.fit(x, y, sample_weight=weight)
    return 400 * lr.coef_[0] + 1000


def case_fastchat(n: int, rounds: int) -> dict[str, float]:
    fastchat_fit(frame(10_000))  # imports and first-call costs stay out of the timings
    df = frame(n)
    t_fit, _ = timed(lambda: fastchat_fit(df))
    times = [timed(lambda k=k: fastchat_fit(df.sample(frac=1.0, replace=True, random_state=k)))[0]
             for k in range(max(1, min(rounds, 2)))]  # fmt: skip
    return {"fit_s": t_fit, "round_s": float(np.mean(times)), "peak_mb": peak_mb()}


def case_parse(n: int, rounds: int) -> dict[str, float]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from leaderboard.data.formats.reader import read_battle_log

    df = frame(n)
    df["tstamp"] = np.arange(n, dtype=np.float64)
    df["anony"] = True
    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        jsonl = Path(tmp) / "battles.jsonl"
        df.to_json(jsonl, orient="records", lines=True)
        parquet = Path(tmp) / "battles.parquet"
        pq.write_table(pa.Table.from_pandas(df, preserve_index=False), parquet)
        json_array = Path(tmp) / "battles.json"
        json_array.write_text("[" + ",".join(jsonl.read_text().splitlines()) + "]")
        for name, path in (("json", json_array), ("jsonl", jsonl), ("parquet", parquet)):
            out[f"{name}_s"] = timed(lambda p=path: read_battle_log(p))[0]
            out[f"{name}_mb"] = path.stat().st_size / 1e6
    out["peak_mb"] = peak_mb()
    return out


CASES = {"ours": case_ours, "style": case_style, "arena-rank": case_arena_rank,
         "fastchat": case_fastchat, "parse": case_parse}  # fmt: skip


def run_case(name: str, n: int, rounds: int, timeout: float) -> dict[str, Any]:
    command = [
        sys.executable,
        __file__,
        "--case",
        name,
        "--battles",
        str(n),
        "--rounds",
        str(rounds),
    ]
    print(f"running {name} at {n:,} battles ...", file=sys.stderr, flush=True)
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    if done.returncode != 0:
        return {"error": (done.stderr.strip().splitlines() or ["failed"])[-1]}
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100k battles, fewer rounds")
    parser.add_argument("--case", choices=sorted(CASES), help=argparse.SUPPRESS)
    parser.add_argument("--battles", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--rounds", type=int, default=1000, help=argparse.SUPPRESS)
    parser.add_argument("--timeout", type=float, default=900, help="seconds per case")
    args = parser.parse_args()
    if args.case:
        print(json.dumps(CASES[args.case](args.battles, args.rounds)))
        return
    sizes = [100_000] if args.quick else [1_000_000, 10_000_000]
    rounds, style_rounds = (100, 10) if args.quick else (1000, 100)
    results: dict[str, dict[str, Any]] = {}
    for n in sizes:
        results[f"ours {n}"] = run_case("ours", n, rounds, args.timeout)
        results[f"arena-rank {n}"] = run_case("arena-rank", n, 3, args.timeout)
        results[f"fastchat {n}"] = run_case("fastchat", n, 1 if n > 1_000_000 else 2, args.timeout)
    results[f"style {sizes[0]}"] = run_case("style", sizes[0], style_rounds, args.timeout)
    results[f"parse {sizes[0]}"] = run_case("parse", sizes[0], 0, args.timeout)
    report(results, sizes, rounds, style_rounds)


def report(
    results: dict[str, dict[str, Any]], sizes: list[int], rounds: int, style_rounds: int
) -> None:
    def get(key: str, field: str) -> float:
        return float(results[key].get(field, float("nan")))

    print(f"\n## {N_MODELS} models, {TIE_RATE:.0%} ties, bootstrap {rounds} rounds\n")
    print("| battles | step | this module | arena-rank | FastChat-style | ratios |")
    print("| ---: | --- | ---: | ---: | ---: | ---: |")
    for n in sizes:
        ours, ar, fc = f"ours {n}", f"arena-rank {n}", f"fastchat {n}"
        for key in (ours, ar, fc):
            if "error" in results[key]:
                print(f"| {n:,} | {key.split()[0]} | error: {results[key]['error']} | | | |")
        point = get(ours, "aggregate_s") + get(ours, "fit_s") + get(ours, "sandwich_s")
        boot, ar_round, fc_round = get(ours, "bootstrap_s"), get(ar, "round_s"), get(fc, "round_s")
        ar_total = get(ar, "sandwich_s") + rounds * ar_round
        fc_total = get(fc, "fit_s") + rounds * fc_round
        rows = [
            ("point ratings + sandwich", point, get(ar, "sandwich_s"), get(fc, "fit_s")),
            ("one bootstrap round", boot / rounds, ar_round, fc_round),
            (f"{rounds} bootstrap rounds", boot, rounds * ar_round, rounds * fc_round),
            (
                f"total, point + sandwich + {rounds} rounds",
                get(ours, "total_s"),
                ar_total,
                fc_total,
            ),
        ]
        for step, mine, theirs, fastchat in rows:
            ratios = f"{theirs / mine:,.0f}x / {fastchat / mine:,.0f}x"
            print(
                f"| {n:,} | {step} | {mine:.3g} s | {theirs:.3g} s | {fastchat:.3g} s | {ratios} |"
            )
        memory = [get(k, "peak_mb") for k in (ours, ar, fc)]
        print(f"| {n:,} | peak memory | " + " | ".join(f"{m:.0f} MB" for m in memory) + " | |")
        prep = f"{get(ar, 'prep_s'):.3g} s; {get(ar, 'sandwich_cold_s'):.3g} s"
        print(f"| {n:,} | arena-rank data preparation; first sandwich call | | {prep} | | |")
    st, pa_ = f"style {sizes[0]}", f"parse {sizes[0]}"
    print(
        f"\nStyle control, {sizes[0]:,} battles: fit {get(st, 'fit_s'):.3g} s, "
        f"{style_rounds} bootstrap rounds {get(st, 'bootstrap_s'):.3g} s, "
        f"total {get(st, 'total_s'):.3g} s, peak {get(st, 'peak_mb'):.0f} MB"
    )
    print(
        f"\nParsing {sizes[0]:,} battles: JSON array {get(pa_, 'json_s'):.3g} s "
        f"({get(pa_, 'json_mb'):.0f} MB), JSON Lines {get(pa_, 'jsonl_s'):.3g} s, "
        f"Parquet {get(pa_, 'parquet_s'):.3g} s ({get(pa_, 'parquet_mb'):.0f} MB)"
    )
    print("\nraw:", json.dumps(results))


if __name__ == "__main__":
    main()
