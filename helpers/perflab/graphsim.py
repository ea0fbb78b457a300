"""Pure-Python models of two CUDA graph features, so their rules can be tried on a CPU.

* Conditional nodes: IF, IF/ELSE, WHILE and SWITCH bodies, chosen at run time by a
  condition value that a kernel sets (``cudaGraphSetConditional`` on the GPU).
* Device-side graph launch: the order in which fire-and-forget and tail launches run,
  and the launch limits the CUDA Programming Guide states (120 fire-and-forget
  launches per graph execution, 255 pending tail launches, 1 pending self tail launch).

Both are interpreters of the documented rules, not of the hardware: they say *what*
runs and in which order, never how long it takes. A graph here is a sequence of nodes
(a chain); real CUDA graphs are DAGs, but branches do not change these rules.

Taught in: notebooks/ch12_orchestration/12_04_conditional_nodes_device_launch.ipynb
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence, Union

# Limits of device-side graph launch (CUDA Programming Guide, "Device Graph Launch").
FIRE_AND_FORGET_LIMIT = 120  # fire-and-forget launches over one graph execution
PENDING_TAIL_LIMIT = 255  # tail launches a graph execution may have queued
SELF_TAIL_LIMIT = 1  # pending tail launches of the running graph itself
_UINT_MAX = 2**32 - 1  # condition values are unsigned 32-bit integers


class GraphError(RuntimeError):
    """A graph cannot run as built (unset condition, runaway loop, too many launches)."""


class LaunchLimitError(GraphError):
    """A device-side launch exceeds one of CUDA's documented limits."""


# ---------------------------------------------------------------------------
# Conditional nodes
# ---------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Condition:
    """A condition handle.

    ``default`` is assigned at the start of every launch (CUDA's
    ``cudaGraphCondAssignDefault``). With ``default=None`` nothing is assigned:
    the value left by the previous launch stays, and reading a value that no
    kernel has set yet is an error (CUDA leaves it unspecified; we refuse to guess).
    """

    name: str
    default: int | None = 0

    def __post_init__(self) -> None:
        if self.default is not None:
            _check_value(self.default)


@dataclass
class Kernel:
    """A kernel node: records its name in the trace and calls ``fn(ctx)`` if given."""

    name: str
    fn: Callable[[KernelContext], None] | None = None


@dataclass
class If:
    """Run ``then`` when the condition is non-zero, else ``orelse`` (IF/ELSE) or nothing (IF)."""

    cond: Condition
    then: Sequence[Node]
    orelse: Sequence[Node] | None = None


@dataclass
class While:
    """Run ``body`` while the condition is non-zero, testing before every iteration (the first too)."""

    cond: Condition
    body: Sequence[Node]


@dataclass
class Switch:
    """Run ``cases[value]``; a value >= len(cases) runs nothing."""

    cond: Condition
    cases: Sequence[Sequence[Node]]

    def __post_init__(self) -> None:
        if len(self.cases) < 1:
            raise ValueError("A SWITCH node needs at least one case.")


Node = Union[Kernel, If, While, Switch]


def _bodies(node: If | While | Switch) -> list[Sequence[Node]]:
    """The body graphs of a conditional node."""
    if isinstance(node, If):
        return [node.then] + ([node.orelse] if node.orelse is not None else [])
    if isinstance(node, While):
        return [node.body]
    return list(node.cases)


def _check_value(value: Any) -> int:
    if isinstance(value, bool):
        return int(value)
    if not isinstance(value, int) or not 0 <= value <= _UINT_MAX:
        raise ValueError(f"Condition values are unsigned 32-bit integers; got {value!r}.")
    return value


@dataclass
class KernelContext:
    """What a kernel's ``fn`` sees: the shared ``state`` and the condition values."""

    state: dict[str, Any]
    _values: dict[Condition, int]

    def set_condition(self, cond: Condition, value: int | bool) -> None:
        """Set a condition, as ``cudaGraphSetConditional(handle, value)`` does on the GPU."""
        self._values[cond] = _check_value(value)

    def condition(self, cond: Condition) -> int:
        """The condition's current value; raises GraphError if it was never set."""
        if cond not in self._values:
            raise GraphError(f"Condition '{cond.name}' is read before any kernel set it, and it has no default.")
        return self._values[cond]


class ConditionalGraph:
    """A graph of kernel and conditional nodes that can be launched repeatedly.

    Example:
        done = Condition("keep_going", default=1)
        def step(ctx):
            ctx.state["i"] += 1
            ctx.set_condition(done, ctx.state["i"] < 3)
        g = ConditionalGraph([While(done, [Kernel("step", step)])])
        g.launch({"i": 0})   # -> ['step', 'step', 'step']
    """

    def __init__(self, nodes: Sequence[Node], *, max_iterations: int = 100_000) -> None:
        if max_iterations < 1:
            raise ValueError(f"`max_iterations` must be at least 1; got {max_iterations}.")
        self.nodes = list(nodes)
        self.max_iterations = max_iterations
        self._values: dict[Condition, int] = {}
        self._check(self.nodes)

    def _check(self, nodes: Sequence[Node]) -> None:
        for node in nodes:
            if isinstance(node, Kernel):
                continue
            if not isinstance(node, (If, While, Switch)):
                raise TypeError(f"Graph nodes are Kernel, If, While or Switch; got {type(node).__name__}.")
            if not isinstance(node.cond, Condition):
                raise TypeError(f"A {type(node).__name__} node needs a Condition; got {node.cond!r}.")
            for body in _bodies(node):
                self._check(body)

    def launch(self, state: dict[str, Any] | None = None) -> list[str]:
        """Run the graph once and return the names of the kernels that ran, in order."""
        for cond in self._conditions(self.nodes):
            if cond.default is not None:
                self._values[cond] = cond.default
        ctx = KernelContext(state if state is not None else {}, self._values)
        trace: list[str] = []
        self._run(self.nodes, ctx, trace)
        return trace

    def _conditions(self, nodes: Sequence[Node]) -> set[Condition]:
        found: set[Condition] = set()
        for node in nodes:
            if not isinstance(node, Kernel):
                found.add(node.cond)
                for body in _bodies(node):
                    found |= self._conditions(body)
        return found

    def _run(self, nodes: Sequence[Node], ctx: KernelContext, trace: list[str]) -> None:
        for node in nodes:
            if isinstance(node, Kernel):
                trace.append(node.name)
                if node.fn is not None:
                    node.fn(ctx)
            elif isinstance(node, If):
                if ctx.condition(node.cond):
                    self._run(node.then, ctx, trace)
                elif node.orelse is not None:
                    self._run(node.orelse, ctx, trace)
            elif isinstance(node, While):
                iterations = 0
                while ctx.condition(node.cond):
                    iterations += 1
                    if iterations > self.max_iterations:
                        raise GraphError(
                            f"WHILE on '{node.cond.name}' ran {self.max_iterations} iterations without the "
                            "condition becoming 0: does a kernel in its body set it?"
                        )
                    self._run(node.body, ctx, trace)
            else:  # Switch
                value = ctx.condition(node.cond)
                if value < len(node.cases):
                    self._run(node.cases[value], ctx, trace)


# ---------------------------------------------------------------------------
# Device-side graph launch
# ---------------------------------------------------------------------------


@dataclass(eq=False)
class DeviceGraph:
    """A graph that kernels may launch from the device; ``body(ctx)`` is what its kernels do."""

    name: str
    body: Callable[[LaunchContext], None] | None = None


@dataclass
class LaunchContext:
    """What a running device graph's body sees, with the three launch modes."""

    graph: DeviceGraph
    state: dict[str, Any]
    tails: list[DeviceGraph] = field(default_factory=list)
    fire_and_forget_children: list[DeviceGraph] = field(default_factory=list)
    _fire_and_forget_count: int = 0

    def fire_and_forget(self, graph: DeviceGraph) -> None:
        """Launch ``graph`` at once, beside the running graph (``cudaStreamGraphFireAndForget``)."""
        if self._fire_and_forget_count >= FIRE_AND_FORGET_LIMIT:
            raise LaunchLimitError(
                f"'{self.graph.name}' tried fire-and-forget launch number {self._fire_and_forget_count + 1}; "
                f"one graph execution may make at most {FIRE_AND_FORGET_LIMIT}."
            )
        self._fire_and_forget_count += 1
        self.fire_and_forget_children.append(graph)

    def tail_launch(self, graph: DeviceGraph) -> None:
        """Queue ``graph`` to run when this graph and its fire-and-forget children finish
        (``cudaStreamGraphTailLaunch``)."""
        if len(self.tails) >= PENDING_TAIL_LIMIT:
            raise LaunchLimitError(
                f"'{self.graph.name}' tried to queue tail launch number {len(self.tails) + 1}; "
                f"at most {PENDING_TAIL_LIMIT} may be pending."
            )
        if graph is self.graph and sum(t is self.graph for t in self.tails) >= SELF_TAIL_LIMIT:
            raise LaunchLimitError(
                f"'{self.graph.name}' tried a second tail launch of itself; at most {SELF_TAIL_LIMIT} "
                "self tail launch may be pending."
            )
        self.tails.append(graph)

    def relaunch_self(self) -> None:
        """Tail-launch the running graph again (``cudaGetCurrentGraphExec()`` on the GPU)."""
        self.tail_launch(self.graph)


def simulate(root: DeviceGraph, state: dict[str, Any] | None = None, *, max_launches: int = 100_000) -> list[str]:
    """Run ``root`` as if launched from the host and return graph names in execution order.

    Rules (CUDA Programming Guide, "Device Graph Launch"):

    * a fire-and-forget child starts at once and runs beside its launcher; it and
      everything it launches finish before the launcher's tail launches start. (The
      trace lists such children after the launcher's body: one legal order.)
    * tail launches run one at a time, in the order they were queued (FIFO);
    * a tail-launched graph's own tail launches run before the tail launches still
      queued by the graph that launched it (depth first: A queues B and C, B queues D
      -> A, B, D, C).

    Raises LaunchLimitError at the launch that breaks a limit, GraphError after
    ``max_launches`` graph executions (a self-relaunch loop that never stops).

    Example:
        def body(ctx):
            ctx.state["n"] += 1
            if ctx.state["n"] < 3:
                ctx.relaunch_self()
        simulate(DeviceGraph("loop", body), {"n": 0})   # -> ['loop', 'loop', 'loop']
    """
    if max_launches < 1:
        raise ValueError(f"`max_launches` must be at least 1; got {max_launches}.")
    shared = state if state is not None else {}
    trace: list[str] = []
    _run_to_completion(root, shared, trace, max_launches)
    return trace


def _run_to_completion(root: DeviceGraph, state: dict[str, Any], trace: list[str], max_launches: int) -> None:
    """Run ``root``, its fire-and-forget children, then its tail launches, depth first."""
    queues: list[deque[DeviceGraph]] = [deque([root])]
    while queues:
        if not queues[-1]:
            queues.pop()
            continue
        graph = queues[-1].popleft()
        if len(trace) >= max_launches:
            raise GraphError(f"More than {max_launches} graph executions: does a self-relaunch loop ever stop?")
        trace.append(graph.name)
        ctx = LaunchContext(graph, state)
        if graph.body is not None:
            graph.body(ctx)
        for child in ctx.fire_and_forget_children:
            _run_to_completion(child, state, trace, max_launches)
        if ctx.tails:
            queues.append(deque(ctx.tails))
