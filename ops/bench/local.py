"""`make bench`: every benchmark against the embedded default app, started once.

Runs the load generator's fast-chat-cpu and embed scenarios (table, JSON, records, CDF plots
under results/loadgen/), then the embeddings and speech HTTP-vs-in-process benchmarks
(results/embeddings/, results/stt/).
"""

from __future__ import annotations

import argparse
import time

from ops.bench import embeddings, stt
from ops.bench.common import app_under_test, write_result
from ops.loadgen import report
from ops.loadgen.cli import RESULTS, execute
from ops.loadgen.scenario import load_scenario

SCENARIOS = ("fast-chat-cpu", "embed")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8020)
    parser.add_argument("--skip-compare", action="store_true", help="only the scenarios")
    opts = parser.parse_args()
    stamp = time.strftime("%Y%m%d-%H%M%S")
    with app_under_test(None, opts.port) as url:
        for name in SCENARIOS:
            result = execute(load_scenario(name), url)
            paths = report.write_run(result, RESULTS / f"{name}-{stamp}")
            print(f"\n{name}\n{report.table(result.summary)}\n(written to {paths['json'].parent})")
        if not opts.skip_compare:
            for bench, kwargs in (
                (
                    embeddings,
                    {"n_texts": 2048, "per_request": [1, 16], "concurrencies": [1, 8, 32]},
                ),
                (stt, {"concurrencies": [1, 4, 8], "rounds": 2}),
            ):
                result = bench.run(url, **kwargs)
                name = bench.__name__.rsplit(".", 1)[-1]
                path = write_result(name, result)
                print(f"\n{name}: HTTP vs in-process\n{result['table']}\n(written to {path})")


if __name__ == "__main__":
    main()
