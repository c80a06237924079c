"""Keep frozen, externally supplied networks (LPIPS, CLIP) out of training checkpoints."""

from __future__ import annotations

from typing import Any

from torch import nn


class FrozenStateMixin(nn.Module):
    """Leaves the submodules named in ``frozen_children`` out of ``state_dict()`` and fills them back in
    on ``load_state_dict()``, so checkpoints stay small and load strictly without them."""

    frozen_children: tuple[str, ...] = ()

    def state_dict(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        state = super().state_dict(*args, **kwargs)
        prefix = kwargs.get("prefix", "")
        names = tuple(f"{prefix}{child}." for child in self.frozen_children)
        for key in [k for k in state if k.startswith(names)]:
            del state[key]
        return state

    def _load_from_state_dict(self, state_dict, prefix, *args: Any) -> None:
        for child in self.frozen_children:
            module = getattr(self, child, None)
            if module is not None:
                for k, v in module.state_dict(prefix=f"{prefix}{child}.").items():
                    state_dict.setdefault(k, v)
        super()._load_from_state_dict(state_dict, prefix, *args)
