"""Progress bars for long operations, in notebooks and terminals alike (tqdm's auto bar).

Short operations show nothing: a bar appears only when there are at least :data:`MIN_ITEMS` items.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol

__all__ = ["MIN_ITEMS", "Progress", "progress"]

MIN_ITEMS = 10_000


class Progress(Protocol):
    """What a progress bar offers: advance by ``n`` items."""

    def update(self, n: int = 1) -> object: ...


class _Silent:
    def update(self, n: int = 1) -> None:
        return None


@contextmanager
def progress(total: int, description: str, *, enabled: bool = True) -> Iterator[Progress]:
    """A bar over ``total`` items when it is long enough to be worth showing, else a silent stand-in.

    Examples
    --------
    >>> with progress(3, "checking") as bar:
    ...     for _ in range(3):
    ...         bar.update(1)
    """
    if not enabled or total < MIN_ITEMS:
        yield _Silent()
        return
    from tqdm.auto import tqdm

    with tqdm(total=total, desc=description, unit="doc", leave=False) as bar:
        yield bar
