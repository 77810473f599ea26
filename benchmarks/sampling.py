"""Simulated arenas: how fast each pair sampling policy pins down the leaderboard.

    .venv/bin/python benchmarks/sampling.py            # docs/sampling.md figures (a few minutes)
    .venv/bin/python benchmarks/sampling.py --quick    # 3 seeds, shorter runs (under a minute)
    .venv/bin/python benchmarks/sampling.py --bias 400 # the bias study only, 400 runs per policy

True strengths are known. Battles are drawn in blocks of ``--step`` votes from the policy's pair
distribution, outcomes from Bradley-Terry (no ties, so that the fit's model is the true one and
interval coverage can be checked); after each block the ratings engine refits (maximum likelihood,
sandwich 95% intervals) and the adaptive plan is recomputed from the battle counts, as beat does.
Recorded after each block: Kendall tau of the fitted order and RMSE of the centred strengths
against the truth, mean interval width (rating points), coverage of the true strengths by the
intervals, and a newly joined model's interval width. Savings are judged by RMSE against the
truth, not by the reported width.

Shapes (rating points; 400 points are odds of 10 to 1):

- ``spread``: 40 models at the normal quantiles of N(1000, 150^2);
- ``clustered``: 40 models, the top 8 within 35 points of each other, the rest spread below;
- ``newcomer``: 30 models settled by 100,000 uniform votes, then a new model (rated 1100) joins.

Policies: ``uniform`` (equal weights), ``weighted`` (``arena.sampling.policy.pair_probabilities``
with the arena's hand-tuned weights: a newer quarter of the models, or the newcomer, weighted 2x),
``boost-W`` (newcomer shape only: the newcomer weighted W, for W in ``BOOSTS``, to find the best
fixed boost in hindsight) and ``adaptive`` (``arena.sampling.adaptive`` from the battle counts,
equal weights, horizon = step). Every policy runs from the same seeds; each seed's settled history
is shared by the policies.

The bias study (``--bias RUNS``): 12 models from 600 to 1400 points, 6,000 votes, a new plan every
500, RUNS runs per policy with paired outcome noise (``paired_runs``); it reports how far the
extreme models end up from the centre beyond the truth, and the RMSE at every checkpoint.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # many small solves: threads only stall here

import argparse
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import stats
from scipy.special import expit

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from arena.sampling.adaptive import (  # noqa: E402
    DEFAULT_FLOOR,
    adaptive_pair_probabilities,
    pair_cdf,
    pair_draw,
)
from arena.sampling.policy import pair_probabilities  # noqa: E402
from leaderboard.engine.ratings import (  # noqa: E402
    aggregate_counts,
    comparison_structure,
    fit_bradley_terry,
    sandwich_covariance,
)

POINTS = 400 / math.log(10)  # rating points per unit of natural-log strength
Z95 = float(stats.norm.ppf(0.975))
POLICIES = ("uniform", "weighted", "adaptive")
BOOSTS = (5, 10, 30, 100, 300, 1000)  # fixed newcomer weights tried for the best in hindsight
NEW_MODEL_TARGET = 20.0  # points: full width of the newcomer's 95% interval


@dataclass(frozen=True)
class Shape:
    name: str
    theta: np.ndarray  # true strengths, natural log, centred
    weights: np.ndarray  # the weighted policy's hand-tuned weights
    votes: int  # votes drawn by the policy
    settled: int = 0  # uniform votes among all but the last model before it joins
    newcomer: bool = False
    target: float = NEW_MODEL_TARGET  # points: the newcomer's interval width to reach


def to_theta(ratings: np.ndarray) -> np.ndarray:
    t = (ratings - 1000.0) / POINTS
    return t - t.mean()


def shapes(quick: bool) -> list[Shape]:
    q = (np.arange(40) + 0.5) / 40
    spread = to_theta(1000 + 150 * stats.norm.ppf(q))
    top = 1200 + np.linspace(0, 35, 8)
    rest = 1000 + 100 * stats.norm.ppf((np.arange(32) + 0.5) / 32)
    clustered = to_theta(np.r_[rest, top])
    settled = 1000 + 150 * stats.norm.ppf((np.arange(30) + 0.5) / 30)
    newcomer = to_theta(np.r_[settled, 1100.0])
    # "Newer" models in the weighted policy: every fourth one, spread over the strengths.
    newer = np.where(np.arange(40) % 4 == 1, 2.0, 1.0)
    scale = 0.4 if quick else 1.0
    return [
        Shape("spread", spread, newer, int(60_000 * scale)),
        Shape("clustered", clustered, newer, int(60_000 * scale)),
        Shape(
            "newcomer",
            newcomer,
            np.r_[np.ones(30), 2.0],
            int(120_000 * scale),
            settled=100_000,
            newcomer=True,
        ),
    ]


def _hash_uniform(seed: int, key: np.ndarray, occurrence: np.ndarray) -> np.ndarray:
    """A uniform number in [0, 1) for each (seed, pair key, occurrence), by SplitMix64."""
    mixed = np.uint64(seed * 0x9E3779B97F4A7C15 % 2**64)
    x = mixed ^ (key.astype(np.uint64) << np.uint64(32)) ^ occurrence.astype(np.uint64)
    z = x + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    z = z ^ (z >> np.uint64(31))
    return np.asarray((z >> np.uint64(11)).astype(np.float64) * 2.0**-53)


class PairedOutcomes:
    """Bradley-Terry outcomes with common random numbers across policies.

    The k-th battle between two models reads the same uniform number whatever the policy (and
    whichever side each model is on), so policies that draw similar pairs get similar noise and
    their difference is measured far more precisely than either one's own error.
    """

    def __init__(self, theta: np.ndarray, seed: int) -> None:
        self.theta, self.seed, self.n = theta, seed, theta.size
        self.seen = np.zeros(self.n * self.n, dtype=np.int64)

    def __call__(self, left: np.ndarray, right: np.ndarray) -> np.ndarray:
        """Outcomes of the battles (left, right), in order: 0 when left won, 1 when right won."""
        n, k = self.n, left.size
        lo, hi = np.minimum(left, right), np.maximum(left, right)
        key = lo * n + hi
        # Rank of each battle among this call's battles of the same pair.
        order = np.argsort(key, kind="stable")
        starts = np.r_[0, np.flatnonzero(np.diff(key[order])) + 1]
        rank = np.empty(k, dtype=np.int64)
        rank[order] = np.arange(k) - np.repeat(starts, np.diff(np.r_[starts, k]))
        u = _hash_uniform(self.seed, key, self.seen[key] + rank)
        self.seen += np.bincount(key, minlength=n * n)
        lo_won = u < expit(self.theta[lo] - self.theta[hi])
        return np.where(left == lo, ~lo_won, lo_won).astype(np.int64)


def draw(
    p: np.ndarray,
    theta: np.ndarray,
    k: int,
    rng: np.random.Generator,
    outcomes: PairedOutcomes | None = None,
) -> tuple[np.ndarray, ...]:
    """``k`` battles: pairs from the ordered-pair matrix ``p``, outcomes from Bradley-Terry
    (from ``outcomes`` when given, else from ``rng``)."""
    n = theta.size
    flat = rng.choice(n * n, size=k, p=p.ravel() / p.sum())
    a, b = np.divmod(flat, n)
    if outcomes is not None:
        return a, b, outcomes(a, b)
    outcome = (rng.random(k) >= expit(theta[a] - theta[b])).astype(np.int64)  # 0: a won
    return a, b, outcome


def fit(a: np.ndarray, b: np.ndarray, o: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Strengths (NaN when not rated) and their sandwich covariance (NaN outside the rated)."""
    counts = aggregate_counts(a, b, o, n)
    rated = comparison_structure(counts).identifiable
    sub, index = counts.restrict(rated)
    theta = np.full(n, np.nan)
    cov = np.full((n, n), np.nan)
    th = fit_bradley_terry(sub)
    theta[index] = th
    cov[np.ix_(index, index)] = sandwich_covariance(sub, th)
    return theta, cov


def policy_weights(shape: Shape, policy: str) -> np.ndarray:
    n = shape.theta.size
    if policy == "weighted":
        return shape.weights
    if policy.startswith("boost-"):
        return np.r_[np.ones(n - 1), float(policy.removeprefix("boost-"))]
    return np.ones(n)


def run(
    shape: Shape, policy: str, seed: int, step: int, floor: float = DEFAULT_FLOOR
) -> dict[str, np.ndarray]:
    """One simulated arena; a ``boost-W`` run stops once the newcomer's target is reached."""
    n = shape.theta.size
    rng = np.random.default_rng([seed, len(shape.name)])
    parts: list[tuple[np.ndarray, ...]] = []
    battles = np.zeros((n, n))
    if shape.settled:
        # The settled arena: the same history for every policy (its own generator).
        old = np.random.default_rng([seed, 99])
        p = np.zeros((n, n))
        p[: n - 1, : n - 1] = pair_probabilities(np.ones(n - 1))
        parts.append(draw(p, shape.theta, shape.settled, old))
        np.add.at(battles, (parts[0][0], parts[0][1]), 1)
    fixed = pair_probabilities(policy_weights(shape, policy))
    outcomes = PairedOutcomes(shape.theta, seed * 1009 + len(shape.name))
    keys = ("votes", "tau", "rmse", "mean", "cov", "new")
    rows: dict[str, list[float]] = {k: [] for k in keys}
    done = 0
    while True:
        a, b, o = (np.concatenate(x) for x in zip(*parts, strict=True)) if parts else (None,) * 3
        theta, cov = (np.full(n, np.nan), np.full((n, n), np.nan))
        if a is not None:
            theta, cov = fit(a, b, o, n)
        if done > 0:
            rated = np.isfinite(theta)
            truth = shape.theta[rated] - shape.theta[rated].mean()
            se = np.sqrt(np.clip(np.diag(cov)[rated], 0, None))
            width = 2 * Z95 * se * POINTS
            rows["votes"].append(done)
            rows["tau"].append(stats.kendalltau(theta[rated], truth).statistic)
            rmse = np.sqrt(np.mean((theta[rated] - theta[rated].mean() - truth) ** 2)) * POINTS
            rows["rmse"].append(float(rmse))
            rows["mean"].append(float(width.mean()))
            rows["cov"].append(float(np.mean(np.abs(theta[rated] - truth) <= Z95 * se)))
            new_se = math.sqrt(max(cov[-1, -1], 0)) if rated[-1] else math.inf
            rows["new"].append(2 * Z95 * new_se * POINTS)
        reached = bool(rows["new"]) and rows["new"][-1] < shape.target
        if done >= shape.votes or (policy.startswith("boost-") and reached):
            break
        if policy == "adaptive":
            p = adaptive_pair_probabilities(battles, floor=floor, horizon=float(step))
        else:
            p = fixed
        parts.append(draw(p, shape.theta, step, rng, outcomes))
        np.add.at(battles, (parts[-1][0], parts[-1][1]), 1)
        done += step
    return {k: np.array(v) for k, v in rows.items()}


def votes_to_reach(votes: np.ndarray, curve: np.ndarray, level: float, *, below: bool) -> float:
    """First vote count (linear interpolation between blocks) at which ``curve`` reaches level."""
    ok = curve <= level if below else curve >= level
    if not ok.any():
        return math.nan
    k = int(np.argmax(ok))
    if k == 0:
        return float(votes[0])
    x0, x1, y0, y1 = votes[k - 1], votes[k], curve[k - 1], curve[k]
    return float(x0 + (level - y0) / (y1 - y0) * (x1 - x0)) if y1 != y0 else float(x1)


def summarise(shape: Shape, res: dict[str, list[dict[str, np.ndarray]]]) -> list[dict[str, object]]:
    mean = {p: {k: np.mean([r[k] for r in res[p]], axis=0) for k in res[p][0]} for p in POLICIES}
    votes = mean["uniform"]["votes"]
    rmse_goal = mean["uniform"]["rmse"][-1]
    tau_goal = mean["uniform"]["tau"][-1]
    out = []
    for p in POLICIES:
        m = mean[p]
        v_rmse = votes_to_reach(votes, m["rmse"], rmse_goal, below=True)
        v_tau = votes_to_reach(votes, m["tau"], tau_goal, below=False)
        row: dict[str, object] = {
            "shape": shape.name, "policy": p, "tau": m["tau"][-1],
            "rmse": m["rmse"][-1], "mean": m["mean"][-1],
            "coverage": float(np.mean([r["cov"] for r in res[p]])),
            "rmse_votes": v_rmse, "rmse_saving": 1 - v_rmse / votes[-1],
            "tau_votes": v_tau, "tau_saving": 1 - v_tau / votes[-1],
            "rmse_ratio": float(np.max(m["rmse"] / mean["uniform"]["rmse"])),
        }  # fmt: skip
        out.append(row)
    return out


def newcomer_votes(
    res: dict[str, list[dict[str, np.ndarray]]], target: float = NEW_MODEL_TARGET
) -> dict[str, float]:
    """Median over seeds of the votes until the newcomer's interval is under ``target``."""
    out = {}
    for p, runs in res.items():
        per_seed = [votes_to_reach(r["votes"], r["new"], target, below=True) for r in runs]
        out[p] = float(np.median(per_seed))
    return out


def fmt(x: object, spec: str) -> str:
    return "-" if isinstance(x, float) and math.isnan(x) else format(x, spec)


def print_table(rows: list[dict[str, object]], seeds: int) -> None:
    print(f"\nMeans over {seeds} seeds at the end of each run; savings are against uniform.\n")
    print(
        "| shape | policy | Kendall tau | RMSE | worst RMSE / uniform's | mean width | coverage "
        "| votes to uniform's RMSE (saving) | votes to uniform's tau (saving) |"
    )
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        print(
            f"| {r['shape']} | {r['policy']} | {r['tau']:.3f} | {r['rmse']:.1f} "
            f"| {r['rmse_ratio']:.3f} | {r['mean']:.1f} | {r['coverage']:.1%} "
            f"| {fmt(r['rmse_votes'], ',.0f')} ({fmt(r['rmse_saving'], '.0%')}) "
            f"| {fmt(r['tau_votes'], ',.0f')} ({fmt(r['tau_saving'], '.0%')}) |"
        )


def print_newcomer(votes: dict[str, float], seeds: int) -> None:
    boosts = {p: v for p, v in votes.items() if p.startswith("boost-")}
    best = min(boosts, key=boosts.__getitem__)
    print(f"\nNewcomer: median over {seeds} seeds of the votes until its interval is under")
    print(f"{NEW_MODEL_TARGET:.0f} points; best fixed boost in hindsight: {best}.\n")
    print("| policy | votes | adaptive's saving against it |")
    print("| --- | ---: | ---: |")
    for p, v in votes.items():
        saving = 1 - votes["adaptive"] / v
        print(f"| {p}{' (best)' if p == best else ''} | {fmt(v, ',.0f')} | {fmt(saving, '.0%')} |")


def plot(shape: Shape, res: dict[str, list[dict[str, np.ndarray]]], out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = {"uniform": "#0072B2", "weighted": "#E69F00", "adaptive": "#009E73"}
    panels = [("rmse", "RMSE vs truth (points)"), ("tau", "Kendall tau"), ("cov", "coverage")]
    if shape.newcomer:
        panels.append(("new", "newcomer's interval width (points)"))
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.6))
    for ax, (key, label) in zip(axes, panels, strict=True):
        for p in POLICIES:
            votes = res[p][0]["votes"]
            curves = np.array([r[key] for r in res[p]])
            curve = np.median(curves, axis=0) if key == "new" else curves.mean(axis=0)
            ax.plot(votes / 1000, curve, color=colours[p], label=p)
        if key == "cov":
            ax.axhspan(0.93, 0.97, color="#dddddd", zorder=0)
            ax.set_ylim(0.8, 1.0)
        if key == "new":
            ax.axhline(NEW_MODEL_TARGET, color="#555555", linestyle="--", linewidth=1)
            ax.set_yscale("log")
        if key == "rmse":
            ax.set_yscale("log")
        ax.set_xlabel("votes (thousands)")
        ax.set_title(label, fontsize=10)
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.suptitle(f"shape: {shape.name}", fontsize=11)
    fig.tight_layout()
    path = out / f"sampling-{shape.name}.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# --- The bias study: many small arenas with paired outcome noise ----------------------------------
BIAS_TRUTH = np.linspace(-400, 400, 12) / POINTS  # 600 to 1400 points: the extremes 10 to 1
Plan = Callable[[np.ndarray, np.ndarray, np.ndarray, int], np.ndarray]


def adaptive_plan(a: np.ndarray, b: np.ndarray, o: np.ndarray, n: int) -> np.ndarray:
    """The arena's adaptive plan from the history so far, as ``leaderboard.pipeline.sampling_plan``
    makes it."""
    return adaptive_pair_probabilities(np.bincount(a * n + b, minlength=n * n).reshape(n, n))


def uniform_plan(a: np.ndarray, b: np.ndarray, o: np.ndarray, n: int) -> np.ndarray:
    return pair_probabilities(np.ones(n))


def paired_runs(
    plan: Plan,
    *,
    runs: int,
    votes: int,
    step: int,
    seed: int,
    truth: np.ndarray = BIAS_TRUTH,
    keep: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray] | None = None,
) -> np.ndarray:
    """Fitted strengths after each block of ``step`` votes: shape (runs, votes // step, n).

    ``plan(a, b, outcome, n)`` gives the pair matrix from the history so far; ``keep`` may drop
    battles after their outcome is known (to check that the bias measure has power). Outcomes
    use common random numbers (``PairedOutcomes``).
    """
    n = truth.size
    out = np.zeros((runs, votes // step, n))
    for r in range(runs):
        pairs = np.random.default_rng([seed, r])
        outcomes = PairedOutcomes(truth, seed * 100_003 + r)
        a, b, o = (np.zeros(0, dtype=np.int64) for _ in range(3))
        for k in range(votes // step):
            left, right, outcome = draw(plan(a, b, o, n), truth, step, pairs, outcomes)
            if keep is not None:
                m = keep(left, right, outcome)
                left, right, outcome = left[m], right[m], outcome[m]
            a, b, o = np.r_[a, left], np.r_[b, right], np.r_[o, outcome]
            out[r, k] = fit_bradley_terry(aggregate_counts(a, b, o, n))
    return out


def outward_errors(fits: np.ndarray, truth: np.ndarray = BIAS_TRUTH) -> np.ndarray:
    """Per run and checkpoint, how far the two extreme models are from the centre beyond the
    truth (mean of the two, rating points): positive means spread too wide."""
    err = (fits - truth) * POINTS
    return np.asarray((err[..., -1] - err[..., 0]) / 2)


def rmse_by_checkpoint(fits: np.ndarray, truth: np.ndarray = BIAS_TRUTH) -> np.ndarray:
    """RMSE against the truth over runs and models, at each checkpoint (rating points)."""
    return np.asarray(np.sqrt(np.mean(((fits - truth) * POINTS) ** 2, axis=(0, 2))))


def bias_study(
    runs: int, votes: int = 6000, step: int = 500, seed: int = 7, plan: Plan | None = None
) -> None:
    """Print the bias study; ``plan`` replaces the adaptive plan (to measure another one)."""
    fits = {
        name: paired_runs(p, runs=runs, votes=votes, step=step, seed=seed)
        for name, p in (("uniform", uniform_plan), ("adaptive", plan or adaptive_plan))
    }
    out = {k: outward_errors(f) for k, f in fits.items()}
    diff = out["adaptive"] - out["uniform"]
    # RMSE ratio with a paired bootstrap over runs (per-run mean squared errors).
    mse = {k: np.mean(((f - BIAS_TRUTH) * POINTS) ** 2, axis=2) for k, f in fits.items()}
    boot = np.random.default_rng(seed).integers(0, runs, (1000, runs))
    ratios = np.sqrt(mse["adaptive"][boot].mean(axis=1) / mse["uniform"][boot].mean(axis=1))
    low, high = np.quantile(ratios, [0.025, 0.975], axis=0)
    print(f"\nBias study: 12 models 600-1400 points, {runs} paired runs, plan every {step} votes.")
    print("Outward bias of the extremes (points, mean +- standard error); RMSE against the truth")
    print("(points) and adaptive's RMSE over uniform's (95% paired bootstrap interval).\n")
    head = ("votes", "uniform bias", "adaptive bias", "difference", "uniform RMSE", "adaptive RMSE")
    print("| " + " | ".join(head) + " | ratio |")
    print("|" + " ---: |" * 7)
    rm = {k: rmse_by_checkpoint(f) for k, f in fits.items()}
    se = {k: v.std(axis=0) / math.sqrt(runs) for k, v in {**out, "diff": diff}.items()}
    for c in range(votes // step):
        cells = [f"{out[k][:, c].mean():+.2f} +- {se[k][c]:.2f}" for k in ("uniform", "adaptive")]
        d = f"{diff[:, c].mean():+.2f} +- {se['diff'][c]:.2f}"
        rms = f"{rm['uniform'][c]:.2f} | {rm['adaptive'][c]:.2f}"
        ratio = f"{rm['adaptive'][c] / rm['uniform'][c]:.3f} ({low[c]:.3f}-{high[c]:.3f})"
        print(f"| {(c + 1) * step:,} | {cells[0]} | {cells[1]} | {d} | {rms} | {ratio} |")


def draw_timing(n: int = 200, draws: int = 20_000) -> float:
    """Microseconds per ``pair_draw`` from a plan over ``n`` models."""
    rng = np.random.default_rng(0)
    battles = rng.integers(0, 100, (n, n)).astype(float)
    cdf = pair_cdf(adaptive_pair_probabilities(battles, iterations=5))
    start = time.perf_counter()
    for _ in range(draws):
        pair_draw(cdf, rng)
    return (time.perf_counter() - start) / draws * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="3 seeds, 40%% of the votes")
    parser.add_argument("--seeds", type=int, help="seeds per shape and policy (default 8, quick 3)")
    parser.add_argument("--step", type=int, default=1000, help="votes between refits")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "img")
    parser.add_argument("--no-plots", action="store_true")
    parser.add_argument("--floor", type=float, default=DEFAULT_FLOOR, help="adaptive's floor")
    parser.add_argument("--shapes", default="spread,clustered,newcomer")
    parser.add_argument("--bias", type=int, metavar="RUNS", help="run only the bias study")
    args = parser.parse_args()
    start = time.perf_counter()
    if args.bias:
        bias_study(args.bias)
        print(f"\n{time.perf_counter() - start:.0f} s", file=sys.stderr)
        return
    seeds = args.seeds or (3 if args.quick else 8)
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for shape in shapes(args.quick):
        if shape.name not in args.shapes.split(","):
            continue
        policies = list(POLICIES)
        if shape.newcomer:
            policies += [f"boost-{w}" for w in BOOSTS]
        res = {p: [run(shape, p, s, args.step, args.floor) for s in range(seeds)] for p in policies}
        rows += summarise(shape, res)
        print(f"{shape.name}: done after {time.perf_counter() - start:.0f} s", file=sys.stderr)
        if shape.newcomer:
            print_newcomer(newcomer_votes(res), seeds)
        if not args.no_plots:
            print(f"saved {plot(shape, res, args.out)}", file=sys.stderr)
    print_table(rows, seeds)
    print(f"\npair_draw, 200 models: {draw_timing():.1f} us per draw")
    print(f"\n{time.perf_counter() - start:.0f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
