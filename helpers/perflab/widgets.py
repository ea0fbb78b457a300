"""Interactive pieces for notebooks: progress bars and explorers.

Headless runs (papermill, nbval) must still produce output and still fail on
errors, so ``explore`` first calls the function plainly with the controls'
starting values, then shows the interactive controls.

Taught in: notebooks/ch03_os_containers/03_03_pinned_memory.ipynb
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, TypeVar

T = TypeVar("T")


def progress(items: Iterable[T], desc: str, total: int | None = None) -> Iterable[T]:
    """Wrap a sweep's points in a progress bar (a widget in Jupyter, text elsewhere)."""
    from tqdm.auto import tqdm

    return tqdm(items, desc=desc, total=total)


def explore(fn: Callable[..., Any], **controls: Any) -> None:
    """Call ``fn`` once with the controls' starting values, then show live controls.

    Each control is an ipywidgets widget whose ``value`` is passed to ``fn``
    under the keyword of the same name; moving one calls ``fn`` again and
    shows its output below the controls.

    Example:
        explore(show_model, n_copies=ipywidgets.IntSlider(value=64, min=1, max=4096))
    """
    import ipywidgets
    from IPython.display import clear_output, display

    missing = [name for name, c in controls.items() if not hasattr(c, "value")]
    if missing:
        raise TypeError(f"Controls must be ipywidgets widgets with a value; not: {', '.join(missing)}.")

    def current() -> dict[str, Any]:
        return {name: c.value for name, c in controls.items()}

    print("With the starting values (move the controls below to explore):")
    fn(**current())
    out = ipywidgets.Output()

    def redraw(_change: Any) -> None:
        with out:
            clear_output(wait=True)
            fn(**current())

    for control in controls.values():
        control.observe(redraw, names="value")
    display(ipywidgets.VBox([*controls.values(), out]))
