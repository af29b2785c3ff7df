"""CommitBook: which offsets may be committed, without a consumer (pure bookkeeping)."""

from __future__ import annotations

from dataclasses import dataclass

from kafka import TopicPartition

from jup2kub_runtime.serving.offsets import CommitBook

A, B = TopicPartition("p.runs", 0), TopicPartition("p.runs", 1)


@dataclass
class Msg:
    tp: TopicPartition
    offset: int
    finished: bool = True
    commit: bool = True
    revoked: bool = False


def book(*msgs: Msg) -> CommitBook[Msg]:
    b: CommitBook[Msg] = CommitBook()
    for m in msgs:
        b.add(m)
    return b


def test_out_of_order_completion_does_not_commit_past_an_unfinished_offset() -> None:
    slow = Msg(A, 5, finished=False)
    b = book(slow, Msg(A, 6), Msg(B, 0))
    b.settle()
    assert b.due() == {}  # B's message waits behind A's too: one queue, consumption order
    slow.finished = True
    b.settle()
    assert b.due() == {A: 7, B: 1} and not b.in_flight


def test_a_message_given_up_on_advances_nothing_itself() -> None:
    b = book(Msg(A, 3, commit=False))
    b.settle()
    assert b.due() == {}
    b.add(Msg(A, 4))
    b.settle()
    assert b.due() == {A: 5}  # as the loop always did: the later message commits past it


def test_confirmed_offsets_are_not_due_again() -> None:
    b = book(Msg(A, 1))
    b.settle()
    b.confirm({A: 2})
    assert b.due() == {} and b.unconfirmed({A: 2, B: 1}) == {B: 1}
    b.confirm({A: 1})  # a late, older confirmation does not move it back
    assert b.committed == {A: 2}


def test_revocation_commits_the_finished_prefix_then_drops_the_partition() -> None:
    pending = Msg(A, 9, finished=False)
    msgs = [Msg(A, 7), Msg(A, 8), pending, Msg(A, 10), Msg(B, 4)]
    b = book(*msgs)
    b.to_commit[A] = 7
    b.committed[A] = 7
    running = Msg(A, 11, finished=False)
    committed_now: list[dict[TopicPartition, int]] = []
    b.revoke({A}, running, committed_now.append)
    assert committed_now == [{A: 9}]  # 7 and 8 are over; 9 is not, so 10 and 11 wait
    assert all(m.revoked for m in [*msgs[:4], running]) and not msgs[4].revoked
    assert A not in b.to_commit and A not in b.committed
    pending.finished = True
    b.settle()
    assert b.due() == {B: 5}  # the revoked partition is no longer committed


def test_revocation_keeps_an_offset_already_safe_to_commit() -> None:
    b = book()
    b.to_commit[B] = 3
    committed_now: list[dict[TopicPartition, int]] = []
    b.revoke({B}, None, committed_now.append)
    assert committed_now == [{B: 3}] and b.to_commit == {}
