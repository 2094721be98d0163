"""pipeline.VerifierQueue: how a pass's candidates are cut into blocks and routed to the verifier
actors (fake actors that record each call; the pass itself runs for real in test_pass_stream)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from axiom_ray.pipeline import VerifierQueue
from axiom_ray.verifier import PassProblems, VerifierPool


class RecordingVerifier:
    """Stands for a VerifyStage handle: `judge_block.remote` records the block's size."""

    def __init__(self) -> None:
        self.blocks: list[int] = []
        self.judge_block = SimpleNamespace(remote=self._call)

    def _call(self, rows: dict[str, list[Any]], problems: PassProblems, uri: str) -> object:
        self.blocks.append(len(rows["sample_id"]))
        return object()  # the call's ref


def queue_of(judges: list[int], batch_size: int = 8) -> tuple[VerifierQueue, list[RecordingVerifier]]:
    verifiers = [RecordingVerifier() for _ in judges]
    pool = VerifierPool(actors=verifiers, concurrency=judges)
    return VerifierQueue(pool, PassProblems("k", None), batch_size, "/tmp/out", "samples-a0"), verifiers


def rows(count: int, start: int = 0) -> list[dict[str, Any]]:
    return [{"sample_id": f"s{i}"} for i in range(start, start + count)]


def finish_all(queue: VerifierQueue) -> None:
    for ref in list(queue.inflight):  # what done() does, without a Ray object behind the ref
        queue.load[queue.inflight.pop(ref)] -= 1


def test_while_generating_full_blocks_fill_the_judges_and_one_more_waits():
    queue, [v] = queue_of([2])
    queue.add(rows(30))
    queue.dispatch(generating=True)
    assert v.blocks == [8, 8, 8] and len(queue.pending) == 6  # 2 judges + 1 queued; no partial block


def test_a_partial_block_goes_only_where_a_judge_would_idle():
    queue, [v] = queue_of([1])
    queue.add(rows(3))
    queue.dispatch(generating=True)
    assert v.blocks == [3]
    queue.add(rows(3, 3))
    queue.dispatch(generating=True)  # its one judge is busy: wait for a full block
    assert v.blocks == [3] and len(queue.pending) == 3


def test_after_generation_the_rest_is_shared_out_over_free_judges_in_shrinking_blocks():
    queue, [a, b] = queue_of([2, 1])
    queue.add(rows(24))
    queue.dispatch(generating=False)
    # Guided: each free judge takes ceil(left / 3 judges): 24 -> 8, 16 -> 6, 10 -> 4; then none
    # is free, and nothing waits queued behind a busy one.
    assert a.blocks + b.blocks in ([8, 4, 6], [8, 6, 4]) and len(queue.pending) == 6
    assert max(queue.load[i] - queue.judges[i] for i in range(2)) == 0
    finish_all(queue)
    queue.dispatch(generating=False)
    assert sorted(a.blocks[2:] + b.blocks[1:]) == [1, 2, 2] and len(queue.pending) == 1
    finish_all(queue)
    queue.dispatch(generating=False)
    assert sum(a.blocks + b.blocks) == 24 and not queue.pending


def test_blocks_go_to_the_verifier_with_the_least_load_per_judge():
    queue, [big, small] = queue_of([3, 1])
    queue.add(rows(4 * 8))
    queue.dispatch(generating=True)
    assert len(big.blocks) == 3 and len(small.blocks) == 1  # each judge one block first
