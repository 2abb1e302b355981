"""Run a rendered Serve config in a process of its own (a private local Ray) until SIGTERM:
`python -m tests.serve_process CONFIG PORT` prints `READY <url>` once every deployment runs.

For tests and benchmarks that need a second app beside the session's shared one (one process
holds one Ray driver)."""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path

from app.launcher import running_app


def main() -> None:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    with running_app(Path(sys.argv[1]), port=int(sys.argv[2])) as url:
        print(f"READY {url}", flush=True)
        stop.wait()


if __name__ == "__main__":
    main()
