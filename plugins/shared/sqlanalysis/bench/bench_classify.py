"""Cost of classifying a statement, per path (numbers only; nothing here is asserted).

    /work/venv/bin/python plugins/shared/sqlanalysis/bench/bench_classify.py [N]

* fingerprint path: pgbench -S statements with a new literal every time (``-M simple``): exact-text cache
  misses, one lexer pass, shape cache hit.  This is the steady state of a gateway in front of pgbench.
* exact-text path: the same text again (a client that re-sends identical statements).
* uncached path: every statement a new shape, so sqlglot parses each one (first sight of a statement).

Each path runs in 5 rounds; the best round is reported (the machine is shared, the best round is the cost
without interference) next to the mean over all rounds.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

from gw_sqlanalysis import Classifier, fingerprint

ROUNDS = 5


def measure(label: str, make_round: Callable[[int], tuple[Classifier, list[str]]]) -> None:
    timings = []
    analyses = 0
    for r in range(ROUNDS):
        classifier, texts = make_round(r)
        before = classifier.analyses
        start = time.perf_counter()
        for text in texts:
            classifier.classify(text)
        timings.append((time.perf_counter() - start) / len(texts) * 1e6)
        analyses += classifier.analyses - before
    print(f"{label:<56} best {min(timings):7.2f} us  mean {sum(timings) / len(timings):7.2f} us/statement"
          f"  ({len(texts)} statements/round, {analyses} sqlglot analyses in {ROUNDS} rounds)")


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    per_round = max(1, n // ROUNDS)

    warm = Classifier("postgres")
    warm.classify("SELECT abalance FROM pgbench_accounts WHERE aid = 0;")

    def pgbench_round(r: int) -> tuple[Classifier, list[str]]:
        base = r * per_round
        return warm, [f"SELECT abalance FROM pgbench_accounts WHERE aid = {base + i + 1};"
                      for i in range(per_round)]

    measure("fingerprint path (new literal, shape cache hit)", pgbench_round)

    same = "SELECT abalance FROM pgbench_accounts WHERE aid = 1;"
    measure("exact-text path (identical text)", lambda r: (warm, [same] * per_round))

    def update_round(r: int) -> tuple[Classifier, list[str]]:
        base = r * per_round
        return warm, [f"UPDATE pgbench_accounts SET abalance = abalance + {base + i} WHERE aid = {i};"
                      for i in range(per_round)]

    measure("fingerprint path, pgbench UPDATE", update_round)

    def new_shapes(r: int) -> tuple[Classifier, list[str]]:
        return Classifier("postgres"), [f"SELECT abalance AS c{r}_{i} FROM pgbench_accounts WHERE aid = {i}"
                                        for i in range(400)]

    measure("uncached path (new shape: lexer + sqlglot)", new_shapes)

    texts = [f"SELECT abalance FROM pgbench_accounts WHERE aid = {i};" for i in range(per_round)]
    best = float("inf")
    for _ in range(ROUNDS):
        start = time.perf_counter()
        for text in texts:
            fingerprint(text)
        best = min(best, (time.perf_counter() - start) / len(texts) * 1e6)
    print(f"{'fingerprint() alone':<56} best {best:7.2f} us/statement")


if __name__ == "__main__":
    main()
