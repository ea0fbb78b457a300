"""perflab.pgas: the one-sided communication emulator, run for real with a few processes."""

from multiprocessing.shared_memory import SharedMemory

import numpy as np
import pytest

from perflab import pgas


def ring(ctx):
    """Each PE puts its number into its right neighbour's inbox, with a signal."""
    me, n = ctx.my_pe(), ctx.n_pes()
    inbox, arrived = ctx.array((4,)), ctx.signal()
    ctx.put_signal(inbox, np.full(4, float(me)), arrived, 1, (me + 1) % n)
    ctx.signal_wait(arrived, 1)
    return inbox.copy()


def test_a_ring_exchange_delivers_each_left_neighbours_data():
    got = pgas.launch(ring, 3)
    assert [list(g) for g in got] == [[2.0] * 4, [0.0] * 4, [1.0] * 4]


def slices_and_get(ctx):
    """Put into a slice of the peer's array, then read the peer's array back with get."""
    me, peer = ctx.my_pe(), 1 - ctx.my_pe()
    u = ctx.array((6,))
    ctx.put(u[2:4], np.array([10.0 + me, 20.0 + me]), peer)
    ctx.barrier_all()
    theirs = np.zeros(6)
    ctx.get(theirs, u, peer)
    return u.copy(), theirs


def test_put_into_a_slice_lands_at_the_same_offset_and_get_reads_the_peer():
    (u0, seen_by_0), (u1, seen_by_1) = pgas.launch(slices_and_get, 2)
    assert list(u0) == [0, 0, 11, 21, 0, 0] and list(u1) == [0, 0, 10, 20, 0, 0]
    assert list(seen_by_0) == list(u1) and list(seen_by_1) == list(u0)


def send_and_signal(ctx, how):
    """PE 0 sends a payload and raises a flag; PE 1 waits for the flag and reads the payload."""
    data, flag = ctx.array((3,)), ctx.signal()
    if ctx.my_pe() == 0:
        if how == "put_signal":
            ctx.put_signal(data, np.arange(1.0, 4.0), flag, 1, 1)
        else:
            ctx.put(data, np.arange(1.0, 4.0), 1)
            if how == "quiet":
                ctx.quiet()
            ctx.signal_op(flag, 1, 1)
        ctx.barrier_all()
        return None
    ctx.signal_wait(flag, 1)
    seen = data.copy()
    ctx.barrier_all()
    return list(seen), list(data)


@pytest.mark.parametrize("how, weak, expected_seen", [
    ("nothing", True, [0.0, 0.0, 0.0]),  # the flag overtook the payload: a stale read, every time
    ("quiet", True, [1.0, 2.0, 3.0]),
    ("put_signal", True, [1.0, 2.0, 3.0]),
    ("nothing", False, [1.0, 2.0, 3.0]),
])
def test_weak_ordering_makes_a_missing_quiet_visible(how, weak, expected_seen):
    _, (seen, after_barrier) = pgas.launch(send_and_signal, 2, how, weak=weak)
    assert seen == expected_seen
    assert after_barrier == [1.0, 2.0, 3.0], "barrier_all delivers every earlier put"


def claim(ctx, tasks):
    counter = ctx.signal()
    mine = []
    while (i := ctx.atomic_fetch_inc(counter, 0)) < tasks:
        mine.append(i)
    return mine


def test_atomic_fetch_inc_hands_out_every_task_exactly_once():
    claimed = pgas.launch(claim, 3, 200)
    assert sorted(i for c in claimed for i in c) == list(range(200))


def test_a_failing_pe_is_named_with_its_error():
    def fail(ctx):
        if ctx.my_pe() == 1:
            raise ValueError("boom")
        ctx.barrier_all()

    with pytest.raises(pgas.PgasError, match=r"PE 1 of 2 failed: ValueError: boom"):
        pgas.launch(fail, 2)


def test_a_wait_that_is_never_satisfied_stops_with_a_clear_error():
    def stuck(ctx):
        ctx.signal_wait(ctx.signal(), 5)

    with pytest.raises(pgas.PgasError, match="waited 0.5 s for a signal to reach 5; it is 0"):
        pgas.launch(stuck, 2, wait_s=0.5)


def test_the_job_time_limit_stops_every_pe():
    def forever(ctx):
        while True:
            pass

    with pytest.raises(pgas.PgasError, match=r"PEs \[0, 1\] of 2 were still running after 1 s"):
        pgas.launch(forever, 2, timeout_s=1)


def test_the_shared_memory_is_released(monkeypatch):
    names = []
    original = SharedMemory.__init__

    def remember(self, *args, **kwargs):
        original(self, *args, **kwargs)
        names.append(self.name)

    monkeypatch.setattr(SharedMemory, "__init__", remember)
    with pytest.raises(pgas.PgasError):
        pgas.launch(lambda ctx: 1 / 0, 2)
    assert len(names) == 2
    for name in names:
        with pytest.raises(FileNotFoundError):
            SharedMemory(name=name)


def test_a_full_heap_and_a_foreign_destination_are_refused():
    def too_big(ctx):
        ctx.array((1 << 20,))

    with pytest.raises(pgas.PgasError, match="symmetric heap .* is full"):
        pgas.launch(too_big, 1, heap_MiB=1)

    def foreign(ctx):
        ctx.put(np.zeros(2), np.ones(2), 0)

    with pytest.raises(pgas.PgasError, match="not on the symmetric heap"):
        pgas.launch(foreign, 1)
