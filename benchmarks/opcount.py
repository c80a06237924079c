"""Operators a piece of code dispatches, as a device-independent proxy for its kernel launches and host
syncs. It imports nothing of dejavu, so it counts any version of the library the same way."""

from collections import Counter

import torch  # noqa: F401  (the doctest's)
from torch.utils._python_dispatch import TorchDispatchMode  # __torch_dispatch__'s mode: documented, module private

# operators that allocate or relabel memory without running a kernel
NO_KERNEL = frozenset({"empty", "empty_like", "empty_strided", "new_empty", "new_empty_strided", "_unsafe_view",
                       "_reshape_alias", "resize_", "set_", "lift_fresh"})
# operators whose result the host reads: on a GPU each waits for the device to catch up
HOST_SYNCS = frozenset({"_local_scalar_dense", "nonzero", "is_nonzero"})


class OpCounter(TorchDispatchMode):
    """Counts the operators a piece of code dispatches, as a device-independent proxy for its kernel
    launches and host syncs: views, metadata and allocations are left out (they launch nothing), and
    ``_local_scalar_dense``, ``nonzero`` and ``is_nonzero`` are counted as host syncs.

    Example:
        >>> with OpCounter() as ops:
        ...     _ = (torch.rand(4).view(2, 2) * 2).sum().item()
        >>> ops.kernels, ops.syncs
        (4, 1)
    """

    def __init__(self) -> None:
        super().__init__()
        self.counts: Counter[str] = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        if not func.is_view and name not in NO_KERNEL:
            self.counts[name] += 1
        return func(*args, **(kwargs or {}))

    @property
    def kernels(self) -> int:
        return sum(self.counts.values())

    @property
    def syncs(self) -> int:
        return sum(n for k, n in self.counts.items() if k in HOST_SYNCS)
