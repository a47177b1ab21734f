"""Offset bookkeeping: which offset of a partition is safe to commit.

Messages of one partition are handled concurrently and finish out of order; an
offset may be committed only when every message before it is finished (it has its
flow run, or it is dead-lettered). `PartitionProgress` tracks that prefix.

Example:
    >>> progress = PartitionProgress()
    >>> for offset in (5, 6, 7):
    ...     progress.started(offset)
    >>> progress.finished(6); progress.committable is None
    True
    >>> progress.finished(5); progress.committable
    7
"""

from __future__ import annotations

from collections import OrderedDict


class PartitionProgress:
    """Offsets of one partition in flight, and the next offset safe to commit.

    Attributes:
        committable: The offset to commit (one past the finished prefix), or None.
        committed: The offset last committed, or None.
    """

    def __init__(self) -> None:
        self._offsets: OrderedDict[int, bool] = OrderedDict()
        self.committable: int | None = None
        self.committed: int | None = None

    @property
    def in_flight(self) -> int:
        """How many started offsets are not committable yet."""
        return len(self._offsets)

    def started(self, offset: int) -> None:
        """Records that the message at ``offset`` is being handled."""
        self._offsets[offset] = False

    def finished(self, offset: int) -> None:
        """Records that the message at ``offset`` is done with, and moves `committable`."""
        if offset in self._offsets:
            self._offsets[offset] = True
        while self._offsets:
            first = next(iter(self._offsets))
            if not self._offsets[first]:
                break
            del self._offsets[first]
            self.committable = first + 1

    @property
    def unfinished_from(self) -> int | None:
        """The first offset not finished yet (the consumer lag counts from it), or None."""
        return next(iter(self._offsets), self.committable)

    @property
    def to_commit(self) -> int | None:
        """`committable` when it moved past `committed`, else None."""
        if self.committable is None or self.committable == self.committed:
            return None
        return self.committable
