#!/usr/bin/env python3
"""How big the commits since BASE are, against the limits a submission must stay under (512 MiB packed as git sends
them, 256 MiB of diffs summed as text over every commit; a file added in one commit and removed in a later one counts
twice). A session that re-ships models twice can pass the second: measure before you stop.

    python scripts/submission_size.py BASE          # BASE: the commit the session started from

Each commit's diff is measured as git writes it with --binary (a binary file's change as base85 hunks both ways,
about 1.3x its old and new bytes together); the largest binary changes are listed by their old and new bytes.
"""
from __future__ import annotations

import argparse
import subprocess
import sys

PACK_LIMIT, DIFF_LIMIT = 512 * 2**20, 256 * 2**20


def git(*args: str, data: bytes | None = None) -> bytes:
    return subprocess.run(["git", *args], input=data, capture_output=True, check=True).stdout


def blob_size(commit: str, path: str) -> int:
    try:
        return int(git("cat-file", "-s", f"{commit}:{path}"))
    except subprocess.CalledProcessError:  # not in that commit (added or removed)
        return 0


def diff_bytes(commit: str) -> tuple[int, list[tuple[int, str]]]:
    """The commit's diff against its first parent as text (git diff --binary); and its binary files' old + new bytes."""
    parent = f"{commit}^"
    binaries = []
    for line in git("diff", "--numstat", "-z", parent, commit).split(b"\0"):
        if line:
            added, removed, path = line.decode().split("\t", 2)
            if added == "-":  # binary: what it was and what it is
                binaries.append((blob_size(parent, path) + blob_size(commit, path), path))
    return len(git("diff", "--binary", "--no-ext-diff", parent, commit)), binaries


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("base", help="the commit the submission starts from (the last landed main)")
    args = parser.parse_args()
    commits = git("rev-list", "--reverse", f"{args.base}..HEAD").decode().split()
    packed = len(git("pack-objects", "--revs", "--stdout", "-q", data=f"HEAD\n^{args.base}\n".encode()))
    diffs, largest = 0, []
    for commit in commits:
        size, binaries = diff_bytes(commit)
        diffs += size
        largest += [(s, f"{commit[:7]} {p}") for s, p in binaries]
    print(f"{len(commits)} commits since {args.base}")
    print(f"packed: {packed / 2**20:.1f} MiB of {PACK_LIMIT / 2**20:.0f}")
    print(f"diffs:  {diffs / 2**20:.1f} MiB of {DIFF_LIMIT / 2**20:.0f}")
    for size, what in sorted(largest, reverse=True)[:10]:
        print(f"  {size / 2**20:7.1f} MiB  {what}")
    over = packed > PACK_LIMIT or diffs > DIFF_LIMIT
    if over:
        print("over a limit: the submission would be refused whole", file=sys.stderr)
    return 1 if over else 0


if __name__ == "__main__":
    sys.exit(main())
