"""Topics and the prompt-conditioned ranking: recovery, coverage and cost (docs/topics.md).

    python benchmarks/topics.py                 # recovery over seeds, then timings at 100k prompts
    python benchmarks/topics.py --seeds 2 --rounds 40 --prompts 20000   # quicker

Recovery: three topics with their own vocabularies and a different best model in each
(leaderboard/engine/topic_simulation.py); Kendall tau of the conditioned and of the global ranking
against the topic's true order, and how often the conditioned 95% intervals cover the topic-level
truth. Cost: fitting the local encoder and the topics on N prompts (what a snapshot does), and
one /api/rank query (encode one prompt, weight N battles, fit).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from leaderboard.engine.conditioned import (
    BANDWIDTH,
    conditioned_leaderboard,
    similarity_weights,
)
from leaderboard.engine.topic_simulation import (
    draw_outcomes,
    make_design,
    make_prompt,
    recovery,
)
from leaderboard.engine.topics import LocalEncoder, cluster_topics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--per-topic", type=int, default=3000)
    parser.add_argument("--bandwidth", type=float, default=BANDWIDTH)
    parser.add_argument("--prompts", type=int, default=100_000)
    args = parser.parse_args()
    print(f"cpus: {os.cpu_count()}, bandwidth {args.bandwidth}, {args.per_topic} battles a topic")
    print("seed  tau_conditioned  tau_global  coverage  intervals  n_eff  max_bias(points)")
    covered = total = 0
    for seed in range(args.seeds):
        r = recovery(seed=seed, per_topic=args.per_topic, rounds=args.rounds,
                     bandwidth=args.bandwidth)  # fmt: skip
        covered += round(r.coverage * r.n_intervals)
        total += r.n_intervals
        print(f"{seed:4d}  {r.tau_conditioned:15.3f}  {r.tau_global:10.3f}  {r.coverage:8.3f}  "
              f"{r.n_intervals:9d}  {r.effective:5.0f}  {r.max_bias:6.1f}")  # fmt: skip
    if total:
        print(f"pooled coverage: {covered / total:.3f} of {total} intervals")

    rng = np.random.default_rng(0)
    design = make_design(rng, per_topic=args.prompts // 3)
    t0 = time.perf_counter()
    encoder, vectors = LocalEncoder.fit_transform(design.prompts)
    t1 = t2 = time.perf_counter()
    topics = cluster_topics(vectors, rng=np.random.default_rng(0))
    t3 = time.perf_counter()
    n = len(design.prompts)
    print(f"{n} prompts: encoder fit and transform {t1 - t0:.1f} s, "
          f"topics (k={topics.k}) {t3 - t2:.1f} s")  # fmt: skip
    outcome = draw_outcomes(rng, design)
    query = make_prompt(rng, design.vocabularies[0])
    times = []
    for _ in range(5):
        s = time.perf_counter()
        q = encoder.transform([query])[0]
        w = similarity_weights(vectors, q, bandwidth=args.bandwidth)
        res = conditioned_leaderboard(design.names, design.model_a, design.model_b, outcome, w)
        times.append(time.perf_counter() - s)
    print(
        f"one conditioned query over {n} battles: median {1000 * np.median(times):.0f} ms "
        f"(n_eff {res.effective:.0f}, {res.n_weighted} battles with weight)"
    )


if __name__ == "__main__":
    main()
