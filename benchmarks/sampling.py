"""Simulated arenas: how fast each pair sampling policy pins down the leaderboard.

    .venv/bin/python benchmarks/sampling.py            # docs/sampling.md figures (a few minutes)
    .venv/bin/python benchmarks/sampling.py --quick    # 3 seeds, shorter runs (under a minute)

True strengths are known. Battles are drawn in blocks of ``--step`` votes from the policy's pair
distribution, outcomes from Bradley-Terry (no ties, so that the fit's model is the true one and
interval coverage can be checked); after each block the ratings engine refits (maximum likelihood,
sandwich 95% intervals) and the adaptive policy is recomputed from that fit, as the snapshot task
does. Recorded after each block: Kendall tau and Spearman rho of the fitted order against the
truth, mean and max interval width (rating points), coverage of the true strengths by the
intervals, and the width of a newly joined model's interval.

Shapes (rating points; 400 points are odds of 10 to 1):

- ``spread``: 40 models at the normal quantiles of N(1000, 150^2);
- ``clustered``: 40 models, the top 8 within 35 points of each other, the rest spread below;
- ``newcomer``: 30 models settled by 100,000 uniform votes, then a new model (rated 1100) joins.

Policies: ``uniform`` (equal weights), ``weighted`` (``arena.sampling.pair_probabilities`` with
the arena's hand-tuned weights: a newer quarter of the models, or the newcomer, weighted 2x) and
``adaptive`` (``arena.adaptive`` with equal weights, floor 0.1, horizon = step). Every policy runs
from the same seeds; each seed's settled history is shared by the policies.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # many small solves: threads only stall here

import argparse
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import stats
from scipy.special import expit

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from arena.adaptive import DEFAULT_ORDER_WEIGHT, adaptive_pair_probabilities  # noqa: E402
from arena.sampling import pair_probabilities  # noqa: E402
from leaderboard.ratings import (  # noqa: E402
    aggregate_counts,
    comparison_structure,
    fit_bradley_terry,
    sandwich_covariance,
)

POINTS = 400 / math.log(10)  # rating points per unit of natural-log strength
Z95 = float(stats.norm.ppf(0.975))
POLICIES = ("uniform", "weighted", "adaptive")
NEW_MODEL_TARGET = 20.0  # points: full width of the newcomer's 95% interval
FLOOR = 0.1


@dataclass(frozen=True)
class Shape:
    name: str
    theta: np.ndarray  # true strengths, natural log, centred
    weights: np.ndarray  # the weighted policy's hand-tuned weights
    votes: int  # votes drawn by the policy
    settled: int = 0  # uniform votes among all but the last model before it joins
    newcomer: bool = False


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


def draw(
    p: np.ndarray, theta: np.ndarray, k: int, rng: np.random.Generator
) -> tuple[np.ndarray, ...]:
    """``k`` battles: pairs from the ordered-pair matrix ``p``, outcomes from Bradley-Terry."""
    n = theta.size
    flat = rng.choice(n * n, size=k, p=p.ravel() / p.sum())
    a, b = np.divmod(flat, n)
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


def run(
    shape: Shape, policy: str, seed: int, step: int, order_weight: float = DEFAULT_ORDER_WEIGHT
) -> dict[str, np.ndarray]:
    n = shape.theta.size
    rng = np.random.default_rng([seed, len(shape.name)])
    parts: list[tuple[np.ndarray, ...]] = []
    if shape.settled:
        # The settled arena: the same history for every policy (its own generator).
        old = np.random.default_rng([seed, 99])
        p = np.zeros((n, n))
        p[: n - 1, : n - 1] = pair_probabilities(np.ones(n - 1))
        parts.append(draw(p, shape.theta, shape.settled, old))
    weights = {"uniform": np.ones(n), "weighted": shape.weights, "adaptive": np.ones(n)}[policy]
    fixed = pair_probabilities(weights)
    rows: dict[str, list[float]] = {k: [] for k in ("votes", "tau", "rho", "mean", "max", "cov")}
    rows["new"] = []
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
            rows["rho"].append(stats.spearmanr(theta[rated], truth).statistic)
            rows["mean"].append(float(width.mean()))
            rows["max"].append(float(width.max()))
            rows["cov"].append(float(np.mean(np.abs(theta[rated] - truth) <= Z95 * se)))
            new_se = math.sqrt(max(cov[-1, -1], 0)) if rated[-1] else math.inf
            rows["new"].append(2 * Z95 * new_se * POINTS)
        if done >= shape.votes:
            break
        if policy == "adaptive":
            p = adaptive_pair_probabilities(
                theta, cov, floor=FLOOR, horizon=float(step), order_weight=order_weight
            )
        else:
            p = fixed
        parts.append(draw(p, shape.theta, step, rng))
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
    mean = {p: {k: np.mean([r[k] for r in res[p]], axis=0) for k in res[p][0]} for p in res}
    votes = mean["uniform"]["votes"]
    width_goal = mean["uniform"]["mean"][-1]
    tau_goal = mean["uniform"]["tau"][-1]
    out = []
    for p in POLICIES:
        m = mean[p]
        v_width = votes_to_reach(votes, m["mean"], width_goal, below=True)
        v_tau = votes_to_reach(votes, m["tau"], tau_goal, below=False)
        row: dict[str, object] = {
            "shape": shape.name, "policy": p, "tau": m["tau"][-1], "rho": m["rho"][-1],
            "mean": m["mean"][-1], "max": m["max"][-1],
            "coverage": float(np.mean([r["cov"] for r in res[p]])),
            "width_votes": v_width, "width_saving": 1 - v_width / votes[-1],
            "tau_votes": v_tau, "tau_saving": 1 - v_tau / votes[-1],
        }  # fmt: skip
        if shape.newcomer:
            per_seed = [
                votes_to_reach(votes, r["new"], NEW_MODEL_TARGET, below=True) for r in res[p]
            ]
            row["new_votes"] = float(np.median(per_seed))
            row["new_reached"] = int(np.sum(np.isfinite(per_seed)))
        out.append(row)
    if shape.newcomer:
        base = out[0]["new_votes"]
        for row in out:
            row["new_saving"] = 1 - row["new_votes"] / base  # type: ignore[operator]
    return out


def fmt(x: object, spec: str) -> str:
    return "-" if isinstance(x, float) and math.isnan(x) else format(x, spec)


def print_table(rows: list[dict[str, object]], seeds: int) -> None:
    print(f"\nMeans over {seeds} seeds at the end of each run; savings are against uniform.\n")
    print(
        "| shape | policy | Kendall tau | Spearman | mean width | max width | coverage "
        "| votes to uniform's width (saving) | votes to uniform's tau (saving) "
        "| newcomer < 20 pts (saving) |"
    )
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        new = "-"
        if "new_votes" in r:
            new = f"{fmt(r['new_votes'], ',.0f')} ({fmt(r['new_saving'], '.0%')})"
        print(
            f"| {r['shape']} | {r['policy']} | {r['tau']:.3f} | {r['rho']:.3f} "
            f"| {r['mean']:.1f} | {r['max']:.1f} | {r['coverage']:.1%} "
            f"| {fmt(r['width_votes'], ',.0f')} ({fmt(r['width_saving'], '.0%')}) "
            f"| {fmt(r['tau_votes'], ',.0f')} ({fmt(r['tau_saving'], '.0%')}) | {new} |"
        )


def plot(shape: Shape, res: dict[str, list[dict[str, np.ndarray]]], out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = {"uniform": "#0072B2", "weighted": "#E69F00", "adaptive": "#009E73"}
    panels = [("mean", "mean 95% interval width (points)"), ("tau", "Kendall tau vs truth")]
    panels.append(("cov", "interval coverage"))
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
        if key == "mean":
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


def plot_shares(shape: Shape, out: Path, seed: int) -> Path:
    """Battle shares by true rating under each policy, from one settled-arena snapshot."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = shape.theta.size
    rng = np.random.default_rng(seed)
    p = pair_probabilities(np.ones(n))
    a, b, o = draw(p, shape.theta, 20_000, rng)
    theta, cov = fit(a, b, o, n)
    policies = {
        "uniform": pair_probabilities(np.ones(n)),
        "weighted": pair_probabilities(shape.weights),
        "adaptive": adaptive_pair_probabilities(theta, cov, floor=FLOOR, horizon=1000.0),
    }
    order = np.argsort(shape.theta)
    fig, ax = plt.subplots(figsize=(8, 3.4))
    width = 0.28
    colours = {"uniform": "#0072B2", "weighted": "#E69F00", "adaptive": "#009E73"}
    for k, (name, mat) in enumerate(policies.items()):
        share = (mat.sum(axis=0) + mat.sum(axis=1))[order]
        ax.bar(np.arange(n) + (k - 1) * width, share, width, color=colours[name], label=name)
    ax.set_xticks(np.arange(n)[::5], [f"{1000 + POINTS * t:.0f}" for t in shape.theta[order][::5]])
    ax.set_xlabel("true rating of the model (weakest to strongest)")
    ax.set_ylabel("share of battles")
    ax.set_title(f"battle shares after 20,000 uniform votes, shape: {shape.name}", fontsize=10)
    ax.legend()
    ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    path = out / f"sampling-shares-{shape.name}.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="3 seeds, 40%% of the votes")
    parser.add_argument("--seeds", type=int, help="seeds per shape and policy (default 8, quick 3)")
    parser.add_argument("--step", type=int, default=1000, help="votes between refits")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "img")
    parser.add_argument("--no-plots", action="store_true")
    parser.add_argument(
        "--order-weight", type=float, default=DEFAULT_ORDER_WEIGHT, help="adaptive's order term"
    )
    parser.add_argument("--shapes", default="spread,clustered,newcomer")
    args = parser.parse_args()
    seeds = args.seeds or (3 if args.quick else 8)
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    start = time.perf_counter()
    for shape in shapes(args.quick):
        if shape.name not in args.shapes.split(","):
            continue
        res = {
            p: [run(shape, p, s, args.step, args.order_weight) for s in range(seeds)]
            for p in POLICIES
        }
        rows += summarise(shape, res)
        print(f"{shape.name}: done after {time.perf_counter() - start:.0f} s", file=sys.stderr)
        if not args.no_plots:
            print(f"saved {plot(shape, res, args.out)}", file=sys.stderr)
            if shape.name == "spread":
                print(f"saved {plot_shares(shape, args.out, 0)}", file=sys.stderr)
    print_table(rows, seeds)
    print(f"\n{time.perf_counter() - start:.0f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
