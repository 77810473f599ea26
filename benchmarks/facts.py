"""Cost of a battle's facts per vote (arena/facts.py): the language detector's first call (its
models load then, once per process), then milliseconds per prompt and per whole vote.

Pure Python, no database: each vote's facts are computed once, when it is recorded (or imported,
or read by `rank`), so this is the CPU a vote adds for them.

    .venv/bin/python benchmarks/facts.py            # 2,000 prompts after the first call
    .venv/bin/python benchmarks/facts.py --prompts 500
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from arena import facts  # noqa: E402

# Prompts of the lengths an arena sees: a few words, a sentence, a paragraph, a pasted text.
SEEDS = [
    "Write a haiku about rivers.",
    "List five prime numbers greater than 100.",
    "Wie spät ist es in Tokio?",
    "Explique-moi la photosynthèse.",
    "¿Cuál es la capital de Australia?",
    "Объясни, как работает квантовый компьютер.",
    "请用三句话解释相对论。",
    "How do I reverse a linked list in Python? Show the code and explain each step.",
]
ANSWER = (
    "# Answer\n\n"
    + "\n".join(f"- point {k} with **bold** text" for k in range(8))
    + ("\n```python\ndef f(x):\n    return x\n```\n" + "Some prose to close the answer. " * 20)
)


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=2000)
    args = parser.parse_args()
    before = rss_mb()
    started = time.perf_counter()
    facts.language_guess("Write a haiku about rivers.")
    first = time.perf_counter() - started
    print(f"first call (detector built, models loaded): {first:.2f} s, "
          f"peak RSS {before:.0f} -> {rss_mb():.0f} MB")  # fmt: skip
    for repeat in (1, 5, 40):
        times = []
        for k in range(args.prompts):
            text = " ".join([SEEDS[k % len(SEEDS)]] * repeat)
            t = time.perf_counter()
            facts.language_guess(text)
            times.append(time.perf_counter() - t)
        chars = statistics.mean(len(" ".join([s] * repeat)) for s in SEEDS)
        print(f"language_guess, prompts of ~{chars:.0f} chars: "
              f"median {1000 * statistics.median(times):.2f} ms, "
              f"p99 {1000 * sorted(times)[int(0.99 * len(times))]:.2f} ms")  # fmt: skip
    times = []
    for k in range(args.prompts):
        prompt = SEEDS[k % len(SEEDS)]
        conv = [{"role": "user", "content": prompt}, {"role": "assistant", "content": ANSWER}]
        t = time.perf_counter()
        facts.battle_facts(conv, conv, tokens_a=200, tokens_b=200)
        times.append(time.perf_counter() - t)
    print(f"battle_facts, one-turn vote, answers of {len(ANSWER)} chars: "
          f"median {1000 * statistics.median(times):.2f} ms, "
          f"p99 {1000 * sorted(times)[int(0.99 * len(times))]:.2f} ms; "
          f"peak RSS {rss_mb():.0f} MB")  # fmt: skip


if __name__ == "__main__":
    main()
