"""Weight files: reading them (``.safetensors`` or ``torch.save`` files, always ``weights_only=True``:
nothing is unpickled; the content checked first, see :func:`verify_file`), writing them with a
content hash (:func:`write_safetensors`), and fetching pretrained ones through the ecosystem's own
loaders (torchvision, Hugging Face Hub for timm / smp / open_clip), which download into their
standard caches when the machine is online and reuse the cache after.

:func:`mismatch` says how a state dict differs from a module's, for every loader's error message.

Downloads are forbidden by ``offline=True`` where a loader takes it, by the environment variable
``DEJAVU_OFFLINE=1``, or by ``dejavu ... --offline true``. A weights file that is neither cached nor
downloadable is a ``FileNotFoundError`` naming the file, the cache it was looked for in, and the
three ways out: connect once, give a local path, or switch the part off.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import socket
import zipfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch import Tensor, nn

__all__ = ["FrozenStateMixin", "MissingDownloadError", "StateMismatch", "from_hub", "is_offline", "mismatch",
           "read_file", "read_tensors", "torchvision_state_dict", "verify_file", "write_safetensors"]

T = TypeVar("T")


class MissingDownloadError(FileNotFoundError):
    """Pretrained weights that are neither cached nor downloadable (offline, or the download failed); the
    message names the file, the cache and the ways out."""


def is_offline(offline: bool | None = None) -> bool:
    """Whether downloads are forbidden: ``offline`` when given, else the ``DEJAVU_OFFLINE``
    environment variable (``1``, ``true`` or ``yes``)."""
    if offline is not None:
        return offline
    return os.environ.get("DEJAVU_OFFLINE", "").strip().lower() in ("1", "true", "yes")


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


@dataclass(frozen=True)
class StateMismatch:
    """How a state dict differs from a module's: the names it lacks, the names the module lacks, and
    the names whose shapes differ. False when they fit; its text names the first difference and counts."""

    missing: list[str]
    unexpected: list[str]
    reshaped: list[tuple[str, tuple[int, ...], tuple[int, ...]]]  # name, the state's shape, the module's

    def __bool__(self) -> bool:
        return bool(self.missing or self.unexpected or self.reshaped)

    def __str__(self) -> str:
        if self.missing:
            first = f"missing parameter {self.missing[0]!r}"
        elif self.unexpected:
            first = f"unexpected parameter {self.unexpected[0]!r}"
        else:
            name, theirs, ours = self.reshaped[0]
            first = f"parameter {name!r} has shape {theirs}, the model expects {ours}"
        return (f"{first} ({len(self.missing)} missing, {len(self.unexpected)} unexpected, "
                f"{len(self.reshaped)} of another shape)")


def mismatch(own: Mapping[str, Tensor], state: Mapping[str, Tensor], optional: tuple[str, ...] = ()) -> StateMismatch:
    """How ``state`` differs from a module's ``own`` state dict; names ending in one of ``optional`` may
    be missing.

    Example:
        >>> m = mismatch(torch.nn.Linear(2, 3).state_dict(), {"weight": torch.zeros(3, 4), "scale": torch.ones(1)})
        >>> str(m)
        "missing parameter 'bias' (1 missing, 1 unexpected, 1 of another shape)"
    """
    return StateMismatch(
        missing=[k for k in own if k not in state and not (optional and k.endswith(optional))],
        unexpected=[k for k in state if k not in own],
        reshaped=[(k, tuple(state[k].shape), tuple(v.shape)) for k, v in own.items()
                  if k in state and tuple(state[k].shape) != tuple(v.shape)])


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
        MissingDownloadError: not cached, and offline or the download failed (a FileNotFoundError).
    """
    import torch.hub

    cache = Path(torch.hub.get_dir()) / "checkpoints"
    file = weights.url.rsplit("/", 1)[-1]
    off = is_offline(offline)
    if off and not (cache / file).is_file():
        raise MissingDownloadError(_missing(what, file, cache, ways_out, True))
    try:
        return weights.get_state_dict(progress=True, check_hash=True)
    except OSError as e:  # URLError and HTTPError are OSErrors
        raise MissingDownloadError(_missing(what, f"{file} ({weights.url})", cache, ways_out, off, str(e))) from None


@contextmanager
def _hub_offline(offline: bool) -> Iterator[None]:
    """Hugging Face Hub's own offline mode (``HF_HUB_OFFLINE``), for the calls inside the block. The hub
    reads that variable once, at import, and has no public switch after it: this sets its module
    constant, the one place in the package that does."""
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
    downloadable becomes the error :func:`torchvision_state_dict` describes. When the Hub cannot be
    reached (a 3-second connection attempt, once per process), the load runs in the Hub's offline
    mode: cached files load at once and a missing one fails at once, instead of after the Hub
    client's retries (54 s for an smp encoder).

    Args:
        load: the call, e.g. ``lambda: timm.create_model("resnet18", pretrained=True)``.
        what, ways_out, offline: as for :func:`torchvision_state_dict`.
        file: what it fetches, for the message (e.g. ``"smp-hub/resnet18.imagenet"``).
    """
    from huggingface_hub import constants

    off = is_offline(offline)
    unreachable = not off and not hub_reachable()
    try:
        with _hub_offline(off or unreachable):
            return load()
    except Exception as e:
        cause = _os_error(e)  # the hub's LocalEntryNotFoundError and HTTP errors are OSErrors; open_clip wraps them
        if cause is None:
            raise
        cache = Path(constants.HF_HUB_CACHE)
        why = f"{constants.ENDPOINT} cannot be reached" if unreachable else _gist(cause)
        raise MissingDownloadError(_missing(what, file, cache, ways_out, off, why)) from None


@functools.cache
def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether a TCP connection to the Hugging Face Hub's endpoint opens within ``timeout`` seconds."""
    from urllib.parse import urlparse

    from huggingface_hub import constants

    url = urlparse(constants.ENDPOINT)
    try:
        socket.create_connection((url.hostname, url.port or 443), timeout=timeout).close()
        return True
    except OSError:
        return False


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
        ValueError: a file that cannot be read: truncated, corrupted (see :func:`verify_file`), not a
            weights file, or holding Python objects that ``weights_only`` refuses to unpickle. The
            message names the file.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"{what} {path} does not exist")
    verify_file(path, what)
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


CONTENT_HASH = "content_sha256"  # the safetensors metadata key: SHA-256 of the file's data section


def write_safetensors(state: dict[str, Tensor], path: str | Path) -> None:
    """``safetensors.torch.save_file``, with the SHA-256 of the tensor data in the header's metadata
    (``content_sha256``), which :func:`verify_file` checks on every read."""
    from safetensors.torch import save

    blob = save(state)  # the data section does not depend on the metadata: hash it, then write with it
    data = blob[8 + int.from_bytes(blob[:8], "little"):]
    Path(path).write_bytes(save(state, metadata={CONTENT_HASH: hashlib.sha256(data).hexdigest()}))


def verify_file(path: str | Path, what: str = "weights file") -> None:
    """Check a weights file's content against the checksums written with it, before anything reads it.

    - ``torch.save`` files and Lightning checkpoints (``.pt``, ``.ckpt``, ``.pt2``) are zip archives
      whose every record carries a CRC-32: all are checked.
    - ``.safetensors`` files written by :func:`write_safetensors` (every run's ``model.safetensors``
      and ``crm.safetensors``) carry the SHA-256 of their data, checked here; other safetensors files
      carry none and are checked for their header only when read.
    - Other files (a legacy ``torch.save`` format) are left to their reader.

    Raises:
        ValueError: a checksum that does not match, or an archive that cannot be opened, naming the file.

    Example:
        >>> import tempfile
        >>> path = Path(tempfile.mkdtemp()) / "w.safetensors"
        >>> write_safetensors({"weight": torch.ones(2)}, path)
        >>> verify_file(path)
        >>> blob = bytearray(path.read_bytes()); blob[-1] ^= 0xFF; _ = path.write_bytes(blob)
        >>> verify_file(path)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: weights file ... is corrupted: its data does not match the SHA-256 written with it...
    """
    path = Path(path)
    damaged = (f"{what} {path} is corrupted: {{}} (flipped bits on a disk, or an interrupted or altered copy); "
               "use another copy, or write it again from its run (dejavu fit ... --ckpt_path last re-exports a run)")
    if path.suffix == ".safetensors":
        with path.open("rb") as f:
            try:
                header = json.loads(f.read(int.from_bytes(f.read(8), "little")))
                expected = (header.get("__metadata__") or {}).get(CONTENT_HASH)
            except (ValueError, AttributeError, MemoryError, OverflowError):
                raise ValueError(damaged.format("its header is not readable")) from None
            if expected is not None and _sha256(f) != expected:
                raise ValueError(damaged.format("its data does not match the SHA-256 written with it"))
        return
    if not zipfile.is_zipfile(path):
        return
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as e:
        raise ValueError(damaged.format(f"its archive cannot be read ({_gist(e)})")) from None
    if bad is not None:
        raise ValueError(damaged.format(f"record {bad} does not match its CRC-32"))


def _sha256(f: Any) -> str:
    digest = hashlib.sha256()  # hashlib.file_digest needs Python 3.11
    while chunk := f.read(1 << 24):
        digest.update(chunk)
    return digest.hexdigest()
