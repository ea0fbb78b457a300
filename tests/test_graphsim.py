"""perflab.graphsim: the conditional-node interpreter and the device-launch ordering simulator."""

import pytest

from perflab.graphsim import (
    FIRE_AND_FORGET_LIMIT,
    PENDING_TAIL_LIMIT,
    Condition,
    ConditionalGraph,
    DeviceGraph,
    GraphError,
    If,
    Kernel,
    LaunchLimitError,
    Switch,
    While,
    simulate,
)


def setter(cond, value):
    """A kernel body that sets ``cond`` to a fixed value."""
    return lambda ctx: ctx.set_condition(cond, value)


# --- conditional nodes -------------------------------------------------------


@pytest.mark.parametrize("value, expected", [(1, ["set", "body", "after"]), (0, ["set", "after"]), (7, ["set", "body", "after"])])
def test_if_runs_body_only_when_nonzero(value, expected):
    c = Condition("c")
    g = ConditionalGraph([Kernel("set", setter(c, value)), If(c, [Kernel("body")]), Kernel("after")])
    assert g.launch() == expected


@pytest.mark.parametrize("value, expected", [(True, ["then"]), (False, ["else"])])
def test_if_else_picks_one_branch(value, expected):
    c = Condition("c")
    g = ConditionalGraph([Kernel("set", setter(c, value)), If(c, [Kernel("then")], [Kernel("else")])])
    assert g.launch()[1:] == expected


def test_while_tests_before_each_iteration():
    c = Condition("more", default=1)

    def step(ctx):
        ctx.state["i"] += 1
        ctx.set_condition(c, ctx.state["i"] < 4)

    g = ConditionalGraph([While(c, [Kernel("step", step)])])
    state = {"i": 0}
    assert g.launch(state) == ["step"] * 4 and state["i"] == 4


def test_while_with_zero_default_runs_no_iteration():
    c = Condition("more", default=0)
    assert ConditionalGraph([While(c, [Kernel("step")]), Kernel("after")]).launch() == ["after"]


@pytest.mark.parametrize("value, expected", [(0, ["a"]), (1, ["b"]), (2, ["c"]), (3, []), (2**32 - 1, [])])
def test_switch_out_of_range_runs_nothing(value, expected):
    c = Condition("case")
    g = ConditionalGraph([Kernel("set", setter(c, value)), Switch(c, [[Kernel("a")], [Kernel("b")], [Kernel("c")]])])
    assert g.launch()[1:] == expected


def test_nested_if_inside_while():
    more, odd = Condition("more", default=1), Condition("odd")

    def step(ctx):
        ctx.state["i"] += 1
        ctx.set_condition(odd, ctx.state["i"] % 2)
        ctx.set_condition(more, ctx.state["i"] < 5)

    g = ConditionalGraph([While(more, [Kernel("step", step), If(odd, [Kernel("odd_work")])])])
    assert g.launch({"i": 0}) == ["step", "odd_work", "step", "step", "odd_work", "step", "step", "odd_work"]


def test_switch_inside_if_else():
    outer, case = Condition("outer"), Condition("case")
    g = ConditionalGraph([
        Kernel("set", lambda ctx: (ctx.set_condition(outer, 1), ctx.set_condition(case, 1))),
        If(outer, [Switch(case, [[Kernel("s0")], [Kernel("s1")]])], [Kernel("else")]),
    ])
    assert g.launch() == ["set", "s1"]


def test_default_is_reassigned_at_every_launch():
    c = Condition("c", default=1)
    g = ConditionalGraph([If(c, [Kernel("body", setter(c, 0))])])
    assert g.launch() == ["body"]
    assert g.launch() == ["body"]  # reset to 1 although the body left 0


def test_without_default_the_value_persists_and_must_be_set_first():
    c = Condition("c", default=None)
    g = ConditionalGraph([If(c, [Kernel("body")])])
    with pytest.raises(GraphError, match="before any kernel set it"):
        g.launch()
    setting = ConditionalGraph([Kernel("set", setter(c, 1)), If(c, [Kernel("body")])])
    assert setting.launch() == ["set", "body"]


def test_condition_values_are_unsigned_32_bit():
    c = Condition("c")
    with pytest.raises(ValueError, match="unsigned 32-bit"):
        ConditionalGraph([Kernel("set", setter(c, -1)), If(c, [])]).launch()
    with pytest.raises(ValueError, match="unsigned 32-bit"):
        Condition("bad", default=2**32)


def test_runaway_while_is_reported():
    c = Condition("forever", default=1)
    with pytest.raises(GraphError, match="without the condition becoming 0"):
        ConditionalGraph([While(c, [Kernel("spin")])], max_iterations=50).launch()


def test_bad_nodes_are_refused():
    with pytest.raises(TypeError, match="Kernel, If, While or Switch"):
        ConditionalGraph(["not a node"])
    with pytest.raises(TypeError, match="needs a Condition"):
        ConditionalGraph([If("c", [])])
    with pytest.raises(ValueError, match="at least one case"):
        Switch(Condition("c"), [])


# --- device-side graph launch ------------------------------------------------


def tails(*graphs):
    return lambda ctx: [ctx.tail_launch(g) for g in graphs]


def test_tail_launches_are_fifo():
    b, c, d = DeviceGraph("B"), DeviceGraph("C"), DeviceGraph("D")
    assert simulate(DeviceGraph("A", tails(b, c, d))) == ["A", "B", "C", "D"]


def test_a_tail_graphs_own_tails_run_before_earlier_queued_ones():
    d = DeviceGraph("D")
    b, c = DeviceGraph("B", tails(d)), DeviceGraph("C")
    assert simulate(DeviceGraph("A", tails(b, c))) == ["A", "B", "D", "C"]


def test_fire_and_forget_children_finish_before_the_launchers_tails():
    tail, child_tail = DeviceGraph("T"), DeviceGraph("child_tail")
    child = DeviceGraph("F", tails(child_tail))

    def body(ctx):
        ctx.tail_launch(tail)
        ctx.fire_and_forget(child)

    assert simulate(DeviceGraph("L", body)) == ["L", "F", "child_tail", "T"]


def test_self_relaunch_loop_counts_in_state():
    work = DeviceGraph("W", lambda ctx: ctx.state.__setitem__("done", ctx.state["done"] + 1))

    def scheduler(ctx):
        if ctx.state["i"] < 3:
            ctx.state["i"] += 1
            ctx.tail_launch(work)
            ctx.relaunch_self()

    state = {"i": 0, "done": 0}
    assert simulate(DeviceGraph("S", scheduler), state) == ["S", "W", "S", "W", "S", "W", "S"]
    assert state == {"i": 3, "done": 3}


def test_second_pending_self_tail_launch_is_refused():
    def twice(ctx):
        ctx.relaunch_self()
        ctx.relaunch_self()

    with pytest.raises(LaunchLimitError, match="second tail launch of itself"):
        simulate(DeviceGraph("S", twice))


def test_pending_tail_limit():
    w = DeviceGraph("W")
    ok = simulate(DeviceGraph("L", lambda ctx: [ctx.tail_launch(w) for _ in range(PENDING_TAIL_LIMIT)]))
    assert ok.count("W") == PENDING_TAIL_LIMIT
    with pytest.raises(LaunchLimitError, match=f"number {PENDING_TAIL_LIMIT + 1}"):
        simulate(DeviceGraph("L", lambda ctx: [ctx.tail_launch(w) for _ in range(PENDING_TAIL_LIMIT + 1)]))


def test_fire_and_forget_limit():
    w = DeviceGraph("W")
    ok = simulate(DeviceGraph("L", lambda ctx: [ctx.fire_and_forget(w) for _ in range(FIRE_AND_FORGET_LIMIT)]))
    assert ok.count("W") == FIRE_AND_FORGET_LIMIT
    with pytest.raises(LaunchLimitError, match=f"at most {FIRE_AND_FORGET_LIMIT}"):
        simulate(DeviceGraph("L", lambda ctx: [ctx.fire_and_forget(w) for _ in range(FIRE_AND_FORGET_LIMIT + 1)]))


def test_limits_count_per_graph_execution():
    """A relaunched graph is a new execution: its counters start again."""

    def body(ctx):
        for _ in range(FIRE_AND_FORGET_LIMIT):
            ctx.fire_and_forget(leaf)
        ctx.state["runs"] += 1
        if ctx.state["runs"] < 2:
            ctx.relaunch_self()

    leaf = DeviceGraph("leaf")
    state = {"runs": 0}
    assert simulate(DeviceGraph("S", body), state).count("leaf") == 2 * FIRE_AND_FORGET_LIMIT


def test_endless_relaunch_is_reported():
    with pytest.raises(GraphError, match="ever stop"):
        simulate(DeviceGraph("S", lambda ctx: ctx.relaunch_self()), max_launches=100)
