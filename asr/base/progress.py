"""Progress of long work, on stderr: a tqdm bar when a person watches a terminal, a few plain lines when the
output goes to a file or a pipe (logs stay readable), nothing for short work."""
from __future__ import annotations

import sys
from typing import Iterable, Iterator, Optional, TypeVar

T = TypeVar("T")


def progress(items: Iterable[T], total: Optional[int], what: str, unit: str = "it", minimum: int = 20) -> Iterator[T]:
    """Yields `items`, reporting how far it got. Work of fewer than `minimum` items is not reported."""
    if total is None or total < minimum:
        yield from items
        return
    if sys.stderr.isatty():
        from tqdm import tqdm

        yield from tqdm(items, total=total, desc=what, unit=unit, leave=False, file=sys.stderr)
        return
    marks = {max(1, round(total * q)) for q in (0.25, 0.5, 0.75, 1.0)}
    for done, item in enumerate(items, 1):
        yield item
        if done in marks:
            print(f"{what}: {done}/{total} {unit}", file=sys.stderr, flush=True)
