"""Weight files: reading them (``.safetensors`` or ``torch.save`` files, always ``weights_only=True``:
nothing is unpickled) and fetching pretrained ones through the ecosystem's own loaders (torchvision,
Hugging Face Hub for timm / smp / open_clip), which download into their standard caches when the
machine is online and reuse the cache after.

Downloads are forbidden by ``offline=True`` where a loader takes it, by the environment variable
``DEJAVU_OFFLINE=1``, or by ``dejavu ... --offline true``. A weights file that is neither cached nor
downloadable is a ``FileNotFoundError`` naming the file, the cache it was looked for in, and the
three ways out: connect once, give a local path, or switch the part off.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch import Tensor

__all__ = ["from_hub", "is_offline", "read_file", "read_tensors", "torchvision_state_dict"]

T = TypeVar("T")


def is_offline(offline: bool | None = None) -> bool:
    """Whether downloads are forbidden: ``offline`` when given, else the ``DEJAVU_OFFLINE``
    environment variable (``1``, ``true`` or ``yes``)."""
    if offline is not None:
        return offline
    return os.environ.get("DEJAVU_OFFLINE", "").strip().lower() in ("1", "true", "yes")


def _missing(what: str, file: str, cache: Path, ways_out: tuple[str, str], offline: bool, cause: str = "") -> str:
    path_option, switch_off = ways_out
    why = ("downloads are off (offline=True, DEJAVU_OFFLINE=1 or --offline true)" if offline
           else f"the download failed ({cause})")
    return (f"{what} needs {file}, which is not in the cache {cache}, and {why}. Either connect to the internet "
            f"once (it is then cached for good), give a local file with {path_option}, or {switch_off}.")


def torchvision_state_dict(weights: Any, what: str, ways_out: tuple[str, str],
                           offline: bool | None = None) -> dict[str, Tensor]:
    """The state dict of a torchvision weights enum member (e.g. ``AlexNet_Weights.IMAGENET1K_V1``),
    from the torch hub cache (``torch.hub.get_dir()/checkpoints``), downloaded there by torchvision
    when missing and allowed.

    Args:
        weights: the enum member.
        what: who needs the weights, first in the error message (``"LPIPS ('alex')"``).
        ways_out: how to give a local file (``"lpips_weights=PATH"``) and how to switch the part off
            (``"switch LPIPS off with lpips_weight=0"``), for the error message.
        offline: forbid the download (``None``: :func:`is_offline`).

    Raises:
        FileNotFoundError: not cached, and offline or the download failed.
    """
    import torch.hub

    cache = Path(torch.hub.get_dir()) / "checkpoints"
    file = weights.url.rsplit("/", 1)[-1]
    off = is_offline(offline)
    if off and not (cache / file).is_file():
        raise FileNotFoundError(_missing(what, file, cache, ways_out, True))
    try:
        return weights.get_state_dict(progress=True, check_hash=True)
    except OSError as e:  # URLError and HTTPError are OSErrors
        raise FileNotFoundError(_missing(what, f"{file} ({weights.url})", cache, ways_out, off, str(e))) from None


@contextmanager
def _hub_offline(offline: bool) -> Iterator[None]:
    """Hugging Face Hub's own offline mode (``HF_HUB_OFFLINE``), for the calls inside the block."""
    from huggingface_hub import constants

    before = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = before or offline
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = before


def from_hub(load: Callable[[], T], what: str, file: str, ways_out: tuple[str, str], offline: bool | None = None) -> T:
    """Run ``load``, a library's own loader that fetches from the Hugging Face Hub (timm, smp,
    open_clip), with downloads forbidden when offline; a file that is neither cached nor
    downloadable becomes the error :func:`torchvision_state_dict` describes.

    Args:
        load: the call, e.g. ``lambda: timm.create_model("resnet18", pretrained=True)``.
        what, ways_out, offline: as for :func:`torchvision_state_dict`.
        file: what it fetches, for the message (e.g. ``"smp-hub/resnet18.imagenet"``).
    """
    from huggingface_hub import constants

    off = is_offline(offline)
    try:
        with _hub_offline(off):
            return load()
    except Exception as e:
        cause = _os_error(e)  # the hub's LocalEntryNotFoundError and HTTP errors are OSErrors; open_clip wraps them
        if cause is None:
            raise
        cache = Path(constants.HF_HUB_CACHE)
        raise FileNotFoundError(_missing(what, file, cache, ways_out, off, _gist(cause))) from None


def _gist(e: BaseException) -> str:
    """An exception's first sentence (libraries' messages run to paragraphs), or its type."""
    text = str(e).strip()
    return text.split(". ")[0].splitlines()[0][:200] if text else type(e).__name__


def _os_error(e: BaseException | None) -> OSError | None:
    """The first OSError in an exception's chain (itself, then its causes)."""
    seen = set()
    while e is not None and id(e) not in seen:
        if isinstance(e, OSError):
            return e
        seen.add(id(e))
        e = e.__cause__ or e.__context__
    return None



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
        raise ValueError(f"{what} {path} cannot be read ({_gist(e)}): it is truncated (an interrupted copy or "
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
