"""Coverage of the 95% intervals in simulated arenas with known strengths (issue 14).

    python benchmarks/coverage.py [--arenas 1000] [--rounds 200] [--style-arenas 200] [--seed 0]

Prints one table row per (case, interval method): the lowest, mean and highest per-model share
of arenas whose interval covered the centred true strength, model 0's (the thin model in the
thin cases), and the Monte-Carlo standard error of one model's share. The cases and what
"covers" means are in ``leaderboard/engine/coverage.py``; ``tests/leaderboard/test_coverage.py`` is
the short version that CI runs.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from leaderboard.engine.coverage import CASES, coverage


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arenas", type=int, default=1000)
    parser.add_argument("--style-arenas", type=int, default=200, help="style bootstrap is slow")
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(f"{'case':<34} {'ci':<9} {'arenas':>6} {'min':>6} {'mean':>6} {'max':>6} "
          f"{'model0':>6} {'MC se':>6} {'secs':>6}")  # fmt: skip
    for k, case in enumerate(CASES):
        for ci in ("sandwich", "bootstrap"):
            slow = case.style is not None and ci == "bootstrap"
            arenas = args.style_arenas if slow else args.arenas
            started = time.perf_counter()
            c = coverage(case, ci=ci, arenas=arenas, seed=args.seed + k, rounds=args.rounds)
            m = c.per_model
            print(
                f"{case.name:<34} {ci:<9} {arenas:>6} {m.min():>6.1%} {m.mean():>6.1%} "
                f"{m.max():>6.1%} {m[0]:>6.1%} {c.standard_error():>6.1%} "
                f"{time.perf_counter() - started:>6.0f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
