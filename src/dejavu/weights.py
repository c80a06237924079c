"""Reading weight files: ``.safetensors`` or ``torch.save`` files (always ``weights_only=True``: nothing
is unpickled), with errors that name the file and say what to do."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor

__all__ = ["read_file", "read_tensors"]


def read_file(path: str | Path, what: str = "weights file") -> Any:
    """What a ``.safetensors`` or ``torch.save`` file holds (tensors and plain containers only).

    Raises:
        FileNotFoundError: no such file.
        ValueError: a file that cannot be read: truncated, not a weights file, or holding Python
            objects that ``weights_only`` refuses to unpickle. The message names the file.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"{what} {path} does not exist")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch and safetensors raise a dozen types for the same few causes
        reason = str(e).strip().split(". ")[0].splitlines()[0][:200] if str(e).strip() else type(e).__name__
        raise ValueError(f"{what} {path} cannot be read ({reason}): it is truncated (an interrupted copy or "
                         "download), not a weights file, or holds objects other than tensors; write it again, "
                         "e.g. with torch.save(model.state_dict(), PATH) or safetensors") from None


def read_tensors(path: str | Path, what: str = "weights file") -> dict[str, Tensor]:
    """The tensors of a state dict file; a Lightning checkpoint gives its ``state_dict``.

    Args:
        path: a ``.safetensors`` file or a ``torch.save`` file of a state dict.
        what: how error messages call the file (e.g. ``"LPIPS: weights file"``).

    Raises:
        FileNotFoundError: no such file.
        ValueError: a file that cannot be read (see :func:`read_file`), or one that holds no state dict.

    Example:
        >>> import tempfile
        >>> path = Path(tempfile.mkdtemp()) / "w.pt"
        >>> torch.save({"weight": torch.ones(2)}, path)
        >>> read_tensors(path)
        {'weight': tensor([1., 1.])}
    """
    state = read_file(path, what)
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        kind = type(state).__name__ if not isinstance(state, dict) else "a dict of non-tensors"
        raise ValueError(f"{what} {path} holds {kind}, not a state dict of tensors (name -> tensor)")
    return state
