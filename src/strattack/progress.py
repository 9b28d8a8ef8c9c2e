"""Progress inside one attack call, without threading a callback through every attack loop.

Every model pass of every attack is counted by :class:`~strattack.attacks.lifecycle.PassCounter`,
which calls :func:`passes_made` with the number of images it just ran through the model. A
caller that wants to follow a long batch (e.g. the evaluation's progress bar) installs a hook
with :func:`report_passes`; without one, :func:`passes_made` costs one context-variable lookup.

This module imports nothing from strattack, so the solver can use it.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

__all__ = ["PassHook", "report_passes", "passes_made"]

#: Called with the number of image forward passes just made (a backward pass comes with one).
PassHook = Callable[[int], None]

# A context variable, not a global: a hook set in one thread (or asyncio task) does not
# receive the passes of attacks running in another.
_HOOK: ContextVar[PassHook | None] = ContextVar("strattack_pass_hook", default=None)


@contextmanager
def report_passes(hook: PassHook | None) -> Iterator[None]:
    """Within the block, every model pass of an attack calls ``hook(images)``; the previous
    hook (if any) is restored afterwards. ``None`` turns reporting off within the block."""
    token = _HOOK.set(hook)
    try:
        yield
    finally:
        _HOOK.reset(token)


def passes_made(images: int) -> None:
    """Tell the installed hook, if any, that ``images`` images went through the model."""
    hook = _HOOK.get()
    if hook is not None:
        hook(images)
