"""Tests of perflab.schedsim: cost patterns, static and dynamic schedules, span helpers."""

import time

import numpy as np
import pytest

from perflab import schedsim
from perflab.schedsim import cost_pattern, dynamic_schedule, lower_bound, static_schedule


@pytest.mark.parametrize("name", schedsim.PATTERNS)
def test_cost_patterns_have_the_asked_mean_and_no_free_items(name):
    costs = cost_pattern(name, 50_000, mean=200)
    assert costs.dtype == np.int64 and costs.shape == (50_000,)
    assert costs.min() >= 1
    assert costs.mean() == pytest.approx(200, rel=0.02)


def test_sawtooth_repeats_every_256_items_and_every_block_of_256_has_the_same_total():
    costs = cost_pattern("sawtooth", 4096, mean=128)
    assert np.array_equal(costs[:256], costs[256:512])
    assert len(set(costs.reshape(-1, 256).sum(axis=1).tolist())) == 1
    assert costs[255] > costs[0]


def test_heavy_sorted_is_the_shuffled_costs_in_descending_order():
    shuffled = cost_pattern("heavy_shuffled", 10_000, mean=50, seed=3)
    ordered = cost_pattern("heavy_sorted", 10_000, mean=50, seed=3)
    assert np.array_equal(np.sort(shuffled)[::-1], ordered)
    assert ordered.max() <= 16 * 50 * 1.01  # the cap, in means, survives the rescaling (to rounding)
    assert ordered.max() > 5 * ordered.mean()  # and the tail really is heavy


def test_uniform_is_constant():
    assert set(cost_pattern("uniform", 100, mean=7).tolist()) == {7}


@pytest.mark.parametrize("bad", [{"name": "spiky", "n": 10}, {"name": "uniform", "n": 0},
                                 {"name": "uniform", "n": 5, "mean": 0}])
def test_cost_pattern_rejects_bad_arguments(bad):
    with pytest.raises(ValueError):
        cost_pattern(**bad)


def test_static_contiguous_gives_each_worker_one_chunk():
    costs = np.arange(1, 11)  # 10 items, 3 workers: chunks [0,3) [3,6) [6,10)
    s = static_schedule(costs, 3)
    assert s.makespan == 7 + 8 + 9 + 10
    assert s.busy.tolist() == [6, 15, 34] and s.n_claims == 0
    assert s.finish.tolist() == [6, 15, 34]
    assert s.utilization == pytest.approx(55 / (3 * 34))
    assert s.finish_spread == pytest.approx((34 - 6) / 34)


def test_static_cyclic_deals_items_round_robin():
    costs = np.arange(1, 11)
    s = static_schedule(costs, 3, layout="cyclic")
    assert s.busy.tolist() == [1 + 4 + 7 + 10, 2 + 5 + 8, 3 + 6 + 9]


def test_static_with_more_workers_than_items():
    s = static_schedule([5, 1], 4)
    assert s.makespan == 5 and s.busy.sum() == 6 and s.finish.tolist().count(0) == 2


def test_dynamic_by_hand_without_and_with_atomic_cost():
    costs = [5, 1, 1]
    free = dynamic_schedule(costs, 2)
    assert free.makespan == 5 and free.finish.tolist() == [5, 2] and free.n_claims == 3
    # counter takes 1 per claim: w0 granted at 1 (runs 1-6); w1 asked at 0, granted at 2 (2-3);
    # w1 asks again at 3, granted at 4 (4-5).
    slow = dynamic_schedule(costs, 2, t_atomic=1.0)
    assert slow.start.tolist() == [1, 2, 4] and slow.end.tolist() == [6, 3, 5]
    assert slow.makespan == 6


def test_dynamic_claims_every_item_once_in_batches():
    costs = cost_pattern("heavy_shuffled", 1000, mean=10)
    s = dynamic_schedule(costs, 7, batch=8, t_atomic=0.1)
    assert s.n_claims == -(-1000 // 8)
    assert s.busy.sum() == pytest.approx(costs.sum())
    assert (s.start >= 0).all() and (s.end >= s.start).all()


def test_dynamic_on_equal_items_without_atomic_cost_is_perfect_list_scheduling():
    s = dynamic_schedule(np.full(100, 2.0), 8)
    assert s.makespan == 2.0 * 13  # ceil(100 / 8) rounds


def test_a_slow_counter_bounds_the_makespan():
    n, t_atomic = 5000, 0.5
    for batch in (1, 4):
        s = dynamic_schedule(np.full(n, 0.01), 64, batch=batch, t_atomic=t_atomic)
        assert s.makespan >= (n // batch) * t_atomic  # the counter serves one claim at a time


@pytest.mark.parametrize("name", schedsim.PATTERNS)
def test_no_schedule_beats_the_lower_bound(name):
    costs = cost_pattern(name, 3000, mean=10)
    bound = lower_bound(costs, 32)
    for s in (static_schedule(costs, 32), static_schedule(costs, 32, layout="cyclic"),
              dynamic_schedule(costs, 32, batch=4, t_atomic=0.01)):
        assert s.makespan >= bound - 1e-9


def test_dynamic_balances_clustered_heavy_work_that_static_chunks_do_not():
    costs = cost_pattern("heavy_sorted", 20_000, mean=10)
    static, dynamic = static_schedule(costs, 132), dynamic_schedule(costs, 132, batch=4, t_atomic=0.02)
    assert static.makespan > 5 * dynamic.makespan
    assert dynamic.utilization > 0.9 > static.utilization
    assert dynamic.finish_spread < 0.1 < static.finish_spread


def test_spans_merge_back_to_back_claims_per_worker():
    s = dynamic_schedule(np.ones(40), 4)  # each worker runs 10 claims back to back
    rows = s.spans(lane="SM")
    assert [r["SM"] for r in rows] == [0, 1, 2, 3]
    assert all(r["start_us"] == 0 and r["end_us"] == 10 for r in rows)
    assert len(s.spans(merge_gap=-1)) == 40  # a negative gap keeps every claim apart


def test_merge_spans_and_active_fraction():
    lanes, starts, ends = [1, 0, 0, 0, 1], [0, 0, 1, 5, 2], [10, 2, 3, 6, 4]
    ml, ms, me = schedsim.merge_spans(lanes, starts, ends)
    assert ml.tolist() == [0, 0, 1] and ms.tolist() == [0, 5, 0] and me.tolist() == [3, 6, 10]
    assert schedsim.merge_spans(lanes, starts, ends, gap=2)[0].tolist() == [0, 1]
    assert schedsim.active_fraction(lanes, starts, ends, 2) == pytest.approx((3 + 1 + 10) / 20)
    assert schedsim.active_fraction(lanes, starts, ends, 4) == pytest.approx(14 / 40)  # two lanes never ran


@pytest.mark.parametrize("call", [
    lambda: static_schedule([], 2),
    lambda: static_schedule([1, -1], 2),
    lambda: static_schedule([1, 2], 0),
    lambda: static_schedule([1, 2], 2, layout="blocked"),
    lambda: dynamic_schedule([1, 2], 2, batch=0),
    lambda: dynamic_schedule([1, 2], 2, t_atomic=-1),
    lambda: lower_bound([np.nan], 1),
])
def test_bad_arguments_raise_one_sentence(call):
    with pytest.raises(ValueError, match=r"\.$"):
        call()


def test_a_smoke_sized_run_takes_well_under_a_second():
    costs = cost_pattern("heavy_sorted", 20_000, mean=10)
    t0 = time.perf_counter()
    for name in schedsim.PATTERNS:
        dynamic_schedule(cost_pattern(name, 20_000, mean=10), 132, batch=1, t_atomic=0.02).spans(merge_gap=0.1)
    static_schedule(costs, 132)
    assert time.perf_counter() - t0 < 1.0
