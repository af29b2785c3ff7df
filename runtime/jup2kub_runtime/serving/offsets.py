"""Which consumed offsets may be committed: the step loop's bookkeeping, without Kafka calls.

A message is committed only once its handling is over (results stored and every message it
produced acknowledged), and then only after every earlier message of its partition is over
too: the loop hands over handled messages in consumption order and ``settle`` advances each
partition's offset from the oldest one, stopping at the first one still awaiting its acks. A
message left uncommitted on purpose (abandoned at shutdown) advances nothing itself. On
revocation a partition's finished prefix is committed at once and the partition is forgotten.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Mapping
from typing import Generic, Protocol, TypeVar

from kafka import TopicPartition


class Handling(Protocol):
    """One consumed message as far as committing goes."""

    #: set here once its partition is revoked: its offset is no longer ours to commit
    revoked: bool

    @property
    def tp(self) -> TopicPartition: ...

    @property
    def offset(self) -> int: ...

    @property
    def finished(self) -> bool:
        """The handling is over, acknowledgements included."""

    @property
    def commit(self) -> bool:
        """Once finished: whether its offset may be committed (False: redo it elsewhere)."""


H = TypeVar("H", bound=Handling)


class CommitBook(Generic[H]):
    """Offsets safe to commit, per partition, and those the broker confirmed."""

    def __init__(self) -> None:
        #: handled messages in consumption order, waiting for their acknowledgements
        self.in_flight: deque[H] = deque()
        #: offsets safe to commit (every earlier message of the partition is over)
        self.to_commit: dict[TopicPartition, int] = {}
        #: offsets the broker confirmed
        self.committed: dict[TopicPartition, int] = {}

    def add(self, handling: H) -> None:
        """A message whose step is done (its acknowledgements may still be pending)."""
        self.in_flight.append(handling)

    def settle(self) -> None:
        """Advance the offsets past the finished messages at the head, in order."""
        while self.in_flight and self.in_flight[0].finished:
            done = self.in_flight.popleft()
            if done.commit and not done.revoked:
                self.to_commit[done.tp] = max(self.to_commit.get(done.tp, 0), done.offset + 1)

    def unconfirmed(self, offsets: Mapping[TopicPartition, int]) -> dict[TopicPartition, int]:
        """Those of ``offsets`` beyond what the broker already confirmed."""
        return {tp: off for tp, off in offsets.items() if self.committed.get(tp, -1) < off}

    def due(self) -> dict[TopicPartition, int]:
        """What to commit now."""
        return self.unconfirmed(self.to_commit)

    def confirm(self, offsets: Mapping[TopicPartition, int]) -> None:
        """The broker took these commits."""
        for tp, off in offsets.items():
            self.committed[tp] = max(self.committed.get(tp, -1), off)

    def revoke(
        self,
        revoked: Iterable[TopicPartition],
        running: H | None,
        commit_now: Callable[[dict[TopicPartition, int]], None],
    ) -> None:
        """Partitions taken away: ``commit_now`` their finished prefix (``running`` is the
        message being handled, newest), then mark their messages revoked and forget them."""
        gone = set(revoked)
        jobs = [*self.in_flight, *([running] if running is not None else [])]
        commit_now(self._revoked_prefix(gone, jobs))
        for job in jobs:
            if job.tp in gone:
                job.revoked = True
        for tp in gone:
            self.to_commit.pop(tp, None)
            self.committed.pop(tp, None)

    def _revoked_prefix(
        self, gone: set[TopicPartition], jobs: list[H]
    ) -> dict[TopicPartition, int]:
        offsets: dict[TopicPartition, int] = {}
        blocked: set[TopicPartition] = set()
        for job in jobs:
            if job.tp not in gone or job.tp in blocked:
                continue
            if not job.finished:
                blocked.add(job.tp)
            elif job.commit and not job.revoked:
                offsets[job.tp] = job.offset + 1
        for tp in gone:
            if tp in self.to_commit:
                offsets[tp] = max(offsets.get(tp, 0), self.to_commit[tp])
        return offsets
