"""Summarise py-spy's collapsed stacks (`py-spy record -f raw`): where the samples are.

    .venv/bin/python bench/_profile_summary.py /tmp/prof/grace-single.txt [TOP]

Prints the share of samples per thread root, per leaf frame (self time) and per
frame anywhere on the stack (inclusive time), line numbers folded away for the
inclusive view.
"""

from __future__ import annotations

import collections
import re
import sys
from pathlib import Path

_SITE = re.compile(r" \(/.*?site-packages/")
_LINE = re.compile(r":\d+\)")


def summarise(path: Path, top: int = 25) -> str:
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    roots: collections.Counter[str] = collections.Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = [_SITE.sub(" (", f) for f in stack.split(";")]
        roots[frames[0]] += n
        own[frames[-1]] += n
        for frame in {_LINE.sub(")", f) for f in frames}:
            inclusive[frame] += n
    if not total:
        return f"{path}: no samples"
    out = [f"{path}: {total} samples", "threads (stack roots):"]
    out += [f"  {n / total:6.1%}  {f}" for f, n in roots.most_common(5)]
    out.append("self:")
    out += [f"  {n / total:6.1%}  {f[:140]}" for f, n in own.most_common(top)]
    out.append("inclusive:")
    out += [f"  {n / total:6.1%}  {f[:140]}" for f, n in inclusive.most_common(top * 2)]
    return "\n".join(out)


if __name__ == "__main__":
    print(summarise(Path(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 25))
