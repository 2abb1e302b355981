"""Top functions of a py-spy `record --format raw` profile (collapsed stacks).

    python -m ops.gpu.profile_top record-llm.txt [N]

Prints the share of samples where each function is on top of the stack (self) and anywhere in it
(inclusive), idle samples (threads waiting in epoll/select/lock waits) counted apart.
"""

from __future__ import annotations

import collections
import sys
from pathlib import Path

IDLE = ("epoll", "select (", "poll (", "wait (threading", "_wait_for_tstate_lock", "acquire (")


def top(path: Path, n: int = 25) -> str:
    self_count: collections.Counter[str] = collections.Counter()
    incl: collections.Counter[str] = collections.Counter()
    total = idle = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        k = int(count)
        frames = [f for f in stack.split(";") if f]
        if not frames:
            continue
        total += k
        leaf = frames[-1]
        if any(mark in leaf for mark in IDLE):
            idle += k
            continue
        self_count[leaf] += k
        for f in set(frames):
            incl[f] += k
    busy = total - idle
    out = [f"{path.name}: {total} samples, {busy} busy ({busy / max(total, 1):.0%}), {idle} idle"]
    out.append("\nself (share of busy samples):")
    out += [f"  {c / max(busy, 1):6.1%}  {f[:150]}" for f, c in self_count.most_common(n)]
    out.append("\ninclusive (share of busy samples):")
    out += [f"  {c / max(busy, 1):6.1%}  {f[:150]}" for f, c in incl.most_common(n)]
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    print(top(Path(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 25))
