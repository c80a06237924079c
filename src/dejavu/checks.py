"""Input checks that never wait for the device.

Reading a value computed on a GPU (``.item()``, ``bool(t)``, ``.tolist()``) stalls the host until the
GPU has run every kernel queued before it; a training step that does so once loses the overlap of
host and device for the rest of the step. :class:`AsyncCheck` copies a check's few statistics to
pinned host memory with ``non_blocking=True`` and looks at them once the copy has landed (an event
query, which does not wait). On a CPU the values are on the host at once, so they are checked at
the call that made them; on a GPU, at a later call, usually the next one.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

__all__ = ["AsyncCheck"]


class AsyncCheck:
    """A queue of statistics on their way to the host, each checked by ``check(values, *context)``
    when it arrives.

    Args:
        check: called with the statistics as a list of floats and the context given to :meth:`submit`;
            raises to report a failure.
        max_pending: entries allowed in flight; the oldest is waited for beyond this (a GPU that
            many calls behind the host is rare: its launch queue fills first).

    Example:
        >>> def positive(values, name):
        ...     if min(values) <= 0:
        ...         raise ValueError(f"{name} is not positive")
        >>> checks = AsyncCheck(positive)
        >>> checks.submit(torch.tensor([1.0, 2.0]), "x")
        >>> checks.submit(torch.tensor([-1.0]), "y")  # on a CPU: checked at once
        Traceback (most recent call last):
        ...
        ValueError: y is not positive
    """

    def __init__(self, check: Callable[..., None], max_pending: int = 16) -> None:
        self.check, self.max_pending = check, max_pending
        self.pending: deque[tuple[Tensor, Any, tuple]] = deque()

    def submit(self, stats: Tensor, *context: Any, sync: bool = False) -> None:
        """Queue the 1-D ``stats`` with ``context``, then check every entry that has arrived (with
        ``sync``, wait for all of them first: one device sync)."""
        stats = stats.detach().float()
        if stats.device.type == "cuda":
            host = torch.empty(stats.shape, dtype=stats.dtype, pin_memory=True)
            host.copy_(stats, non_blocking=True)
            event = torch.cuda.Event()
            event.record()
            self.pending.append((host, event, context))
        else:  # on the host already (a CPU, or a device whose copies are synchronous)
            self.pending.append((stats.cpu(), None, context))
        self.poll(wait=sync)

    def poll(self, wait: bool = False) -> None:
        """Check the entries whose values have arrived, oldest first; with ``wait``, all of them."""
        while self.pending:
            host, event, context = self.pending[0]
            if event is not None and not event.query():
                if not (wait or len(self.pending) > self.max_pending):
                    return
                event.synchronize()
            self.pending.popleft()
            self.check(host.tolist(), *context)

    def clear(self) -> None:
        """Forget the entries in flight (e.g. after reporting one of them)."""
        self.pending.clear()
