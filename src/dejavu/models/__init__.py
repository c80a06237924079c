"""Dense prediction networks behind one factory, :func:`create_model`.

``unet`` and ``segnet_mtl`` are our own small networks, sized for CPU training; ``smp:<Arch>``
gives any segmentation_models_pytorch architecture with any encoder it knows, timm's included
(``encoder="tu-hrnet_w18"``: the paper's Cityscapes backbone). All start from random weights;
pretrained weights come only from a local file (``weights=PATH``), never from the network.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..arguments import matches
from ..weights import from_hub, mismatch, read_file, read_tensors
from .denseclip import CLIP_CONFIGS, DenseCLIP
from .hms import HMS
from .hrnet import HRNetV2
from .mask2former import Mask2Former, QueryPrediction, build_mask2former
from .ocr import OCR
from .segnet_mtl import SegNetMTL
from .shared_attention import SharedAttention
from .transunet import TransUNet
from .unet import UNet
from .vit_upernet import ViTUperNet, vit_encoder

__all__ = ["HMS", "MODELS", "OCR", "DenseCLIP", "HRNetV2", "Mask2Former", "QueryPrediction", "SegNetMTL",
           "SharedAttention", "TransUNet", "UNet", "ViTUperNet", "create_model", "load_encoder_weights",
           "load_weights", "model_cost", "register_model"]

MODELS: dict[str, Callable[..., nn.Module]] = {}


def register_model(name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator: make a builder ``(out_channels, **kwargs) -> nn.Module`` available to :func:`create_model`."""
    def add(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        MODELS[name] = builder
        return builder
    return add


@register_model("unet")
def _unet(out_channels: int | Sequence[int], **kwargs) -> nn.Module:
    return UNet(_total(out_channels), **kwargs)


@register_model("segnet_mtl")
def _segnet_mtl(out_channels: int | Sequence[int], **kwargs) -> nn.Module:
    return SegNetMTL([out_channels] if isinstance(out_channels, int) else list(out_channels), **kwargs)


@register_model("dejavu_sa")
def _dejavu_sa(out_channels: int | Sequence[int], base: dict | None = None, **kwargs) -> nn.Module:
    """DejaVu-SA around a base network given as a spec, e.g. ``base={"name": "unet", "width": 16}``."""
    spec = dict(base or {"name": "unet"})
    return SharedAttention(create_model(spec.pop("name"), out_channels, **spec), _total(out_channels), **kwargs)


@register_model("mask2former")
def _mask2former(out_channels: int | Sequence[int], **kwargs) -> nn.Module:
    """Hugging Face's Mask2Former for ``out_channels`` classes (:func:`.mask2former.build_mask2former`)."""
    return build_mask2former(_total(out_channels), **kwargs)


def model_cost(model: nn.Module, size: tuple[int, int] = (128, 128)) -> dict[str, int]:
    """Parameters and forward FLOPs (``torch.utils.flop_counter``, one multiply-add = 2 FLOPs) of
    ``model`` on one ``3 x H x W`` image, in eval mode."""
    from torch.utils.flop_counter import FlopCounterMode

    was_training = model.training
    model.eval()
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(torch.zeros(1, 3, *size, device=next(model.parameters()).device))
    model.train(was_training)
    return {"parameters": sum(p.numel() for p in model.parameters()), "flops": counter.get_total_flops()}


def _smp(arch: str, out_channels: int | Sequence[int], encoder: str = "resnet18",
         encoder_weights: str | Path | None = None, offline: bool | None = None, **kwargs) -> nn.Module:
    import segmentation_models_pytorch as smp  # optional dependency, imported only when asked for

    def build(weights: str | None) -> nn.Module:
        return smp.create_model(arch, encoder_name=encoder, encoder_weights=weights, classes=_total(out_channels),
                                **kwargs)

    model = _with_encoder_weights(build, f"create_model({'smp:' + arch!r}, encoder={encoder!r})", encoder,
                                  encoder_weights, offline)
    if getattr(model, "requires_divisible_input_shape", False):
        pad_to_stride(model, model.encoder.output_stride)
    return model


@register_model("ocr")
def _ocr(out_channels: int | Sequence[int], encoder: str = "tu-hrnet_w18", encoder_weights: str | Path | None = None,
         offline: bool | None = None, **kwargs) -> nn.Module:
    """HRNet-OCR's head (:class:`~dejavu.models.ocr.OCR`) on any segmentation_models_pytorch encoder."""
    return _on_hrnet_branches(lambda enc: OCR(enc, _total(out_channels), **kwargs), "ocr", encoder, encoder_weights,
                              offline)


@register_model("ocr_hms")
def _ocr_hms(out_channels: int | Sequence[int], encoder: str = "tu-hrnet_w48",
             encoder_weights: str | Path | None = None, offline: bool | None = None,
             train_scales: Sequence[float] = (0.5, 1.0), eval_scales: Sequence[float] = (0.5, 1.0, 2.0),
             attention_channels: int = 256, **kwargs) -> nn.Module:
    """HRNet-OCR-HMS (:class:`~dejavu.models.hms.HMS`): OCR at several scales, combined by learnt attention."""
    ocr = _ocr(out_channels, encoder, encoder_weights, offline, **kwargs)
    return HMS(ocr, train_scales, eval_scales, attention_channels)


@register_model("upernet_vit")
def _upernet_vit(out_channels: int | Sequence[int], encoder: str = "vit_base_patch16_224",
                 encoder_weights: str | Path | None = None, offline: bool | None = None,
                 encoder_kwargs: dict | None = None, **kwargs) -> nn.Module:
    """UperNet on timm's plain ViT ``encoder`` through a multi-level neck (:class:`~.vit_upernet.ViTUperNet`);
    ``encoder_kwargs`` go to ``timm.create_model`` (e.g. ``{depth: 4}`` for a small one)."""
    return _on_vit(lambda vit: ViTUperNet(vit, _total(out_channels), **kwargs), "upernet_vit", encoder,
                   encoder_weights, offline, encoder_kwargs)


@register_model("transunet")
def _transunet(out_channels: int | Sequence[int], encoder: str = "vit_base_r50_s16_224",
               encoder_weights: str | Path | None = None, offline: bool | None = None,
               encoder_kwargs: dict | None = None, **kwargs) -> nn.Module:
    """TransUNet (:class:`~.transunet.TransUNet`), the DDeP paper's network, on timm's hybrid ViT ``encoder``
    (R50+ViT-B/16; ``encoder_weights="imagenet"``: timm's ImageNet-21k weights, ``orig_in21k``)."""
    return _on_vit(lambda vit: TransUNet(vit, _total(out_channels), **kwargs), "transunet", encoder,
                   encoder_weights, offline, encoder_kwargs)


@register_model("denseclip")
def _denseclip(out_channels: int | Sequence[int], clip: str = "ViT-B-16", encoder_weights: str | Path | None = None,
               offline: bool | None = None, class_names: Sequence[str] | str = "ade20k", name_length: int = 5,
               **kwargs) -> nn.Module:
    """DenseCLIP (:class:`~.denseclip.DenseCLIP`) on open_clip's ``clip`` model, prompted with ``class_names``
    (a list, or a dataset's name such as ``"ade20k"`` for its classes), each tokenised to ``name_length``
    tokens. ``encoder_weights``: an open_clip pretrained tag (``"openai"``, fetched once by open_clip), a
    local checkpoint, or ``None`` (random)."""
    import open_clip

    names = _class_names(class_names)
    if len(names) != _total(out_channels):
        raise ValueError(f"create_model('denseclip'): {len(names)} class names for {_total(out_channels)} classes; "
                         "give one name per class")
    open_clip.add_model_config(CLIP_CONFIGS)
    what = f"create_model('denseclip', clip={clip!r})"
    if encoder_weights is None or _is_path(encoder_weights):
        if encoder_weights is not None and not Path(encoder_weights).expanduser().is_file():
            raise FileNotFoundError(f"{what}: CLIP checkpoint {encoder_weights} does not exist")
        model = open_clip.create_model(clip, pretrained=str(Path(encoder_weights).expanduser()) if encoder_weights
                                       else None)
    else:
        ways_out = ("encoder_weights=PATH (an open_clip checkpoint file)",
                    "train from scratch with encoder_weights=None")
        model = from_hub(lambda: open_clip.create_model(clip, pretrained=str(encoder_weights)), what,
                         f"the {encoder_weights!r} weights of {clip!r}", ways_out, offline)
    return DenseCLIP(model, open_clip.tokenize(names, context_length=name_length), **kwargs)


def _class_names(spec: Sequence[str] | str) -> list[str]:
    """Class names given as a list, or as a dataset's name (``"ade20k"``, ``"cityscapes"``...)."""
    from .. import data

    readers = {"ade20k": data.ADE20K, "cityscapes": data.Cityscapes, "camvid": data.CamVid,
               "coco_panoptic": data.COCOPanoptic, "nyud": data.NYUDv2}
    if isinstance(spec, str):
        if spec not in readers:
            raise ValueError(f"create_model: class_names must be a list of names or one of {sorted(readers)}, got "
                             f"{spec!r}")
        return list(readers[spec].classes)
    return [str(name) for name in spec]


@register_model("hrnetv2")
def _hrnetv2(out_channels: int | Sequence[int], encoder: str = "tu-hrnet_w18",
             encoder_weights: str | Path | None = None, offline: bool | None = None) -> nn.Module:
    """HRNetV2 (:class:`~dejavu.models.hrnet.HRNetV2`): HRNet's branches through its own segmentation head;
    ``encoder="tu-hrnet_w48"`` for HRNet48."""
    return _on_hrnet_branches(lambda enc: HRNetV2(enc, _total(out_channels)), "hrnetv2", encoder, encoder_weights,
                              offline)


def _on_vit(network: Callable[[nn.Module], nn.Module], name: str, encoder: str, encoder_weights: str | Path | None,
            offline: bool | None, encoder_kwargs: dict | None) -> nn.Module:
    """``network(vit)`` on timm's ViT ``encoder`` at any input size (``encoder_kwargs`` go to
    ``timm.create_model``), its weights fetched by timm for a name or loaded from a local file."""
    build = vit_encoder(encoder, **(encoder_kwargs or {}))
    what = f"create_model({name!r}, encoder={encoder!r})"
    return _with_encoder_weights(lambda weights: network(build(weights)), what, f"tu-{encoder}", encoder_weights,
                                 offline)


def _on_hrnet_branches(head: Callable[[nn.Module], nn.Module], name: str, encoder: str,
                       encoder_weights: str | Path | None, offline: bool | None) -> nn.Module:
    """``head(encoder)`` on a segmentation_models_pytorch encoder; timm's HRNet with its branches as they
    are. timm gives them widened (128...1024 channels) unless asked: HRNetV2's representation, which its
    head and OCR read, is the branches themselves (18 + 36 + 72 + 144 channels for W18)."""
    import segmentation_models_pytorch as smp

    raw_branches = {"feature_location": ""} if encoder.startswith("tu-hrnet") else {}

    def build(weights: str | None) -> nn.Module:
        return head(smp.encoders.get_encoder(encoder, weights=weights, **raw_branches))

    return _with_encoder_weights(build, f"create_model({name!r}, encoder={encoder!r})", encoder, encoder_weights,
                                 offline)


def _with_encoder_weights(build: Callable[[str | None], nn.Module], what: str, encoder: str,
                          encoder_weights: str | Path | None, offline: bool | None) -> nn.Module:
    """``build(weights_name)``'s network, its ``encoder`` loaded from a local file or, for a weights name
    ("imagenet"...), fetched by smp (timm for ``tu-`` encoders) from the Hugging Face Hub."""
    if encoder_weights is None or _is_path(encoder_weights):
        model = build(None)
        if encoder_weights is not None:
            load_encoder_weights(model.encoder, encoder_weights)
        return model
    repo = _hub_repo(encoder, str(encoder_weights)) or f"the {encoder_weights!r} weights of {encoder!r}"
    ways_out = ("encoder_weights=PATH (a state dict of the encoder)", "train from scratch with encoder_weights=None")
    return from_hub(lambda: build(str(encoder_weights)), what, repo, ways_out, offline)


def pad_to_stride(model: nn.Module, stride: int) -> None:
    """Let ``model`` take any image size although it needs sides divisible by ``stride`` (smp's FPN,
    UNet... need 32): the input is padded at the bottom and right (edge pixels repeated) to the next
    multiple, and the output cropped back to the input's size. Forward hooks: the state dict is unchanged.

    Example:
        >>> net = nn.Conv2d(3, 2, 1)
        >>> pad_to_stride(net, 32)
        >>> net(torch.rand(1, 3, 20, 45)).shape
        torch.Size([1, 2, 20, 45])
    """
    model.dejavu_stride = stride
    model.register_forward_pre_hook(_pad)
    model.register_forward_hook(_crop)


def _pad(model: nn.Module, args: tuple) -> tuple:
    x, *rest = args
    model.dejavu_input_size = tuple(x.shape[-2:])
    return (F.pad(x, (0, -x.shape[-1] % model.dejavu_stride, 0, -x.shape[-2] % model.dejavu_stride),
                  mode="replicate"), *rest)


def _crop(model: nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor:
    h, w = model.dejavu_input_size
    return output[..., :h, :w]


def _hub_repo(encoder: str, weights: str) -> str | None:
    """The Hugging Face Hub repository smp (or timm, for ``tu-`` encoders) fetches the weights from."""
    if encoder.startswith("tu-"):
        import timm

        cfg = timm.models.get_pretrained_cfg(encoder[3:])
        return getattr(cfg, "hf_hub_id", None)
    import segmentation_models_pytorch as smp

    settings = getattr(smp.encoders, "encoders", {}).get(encoder, {}).get("pretrained_settings", {})
    return settings.get(weights, {}).get("repo_id")


def _is_path(weights: str | Path) -> bool:
    """A local file rather than a weights name such as ``"imagenet"``."""
    text = str(weights)
    return isinstance(weights, Path) or "/" in text or os.sep in text or Path(text).suffix in WEIGHT_SUFFIXES


WEIGHT_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt", ".safetensors")


def _check_count(name: str, value: object) -> None:
    if not matches(value, int):
        raise TypeError(f"create_model: {name} must be an int, got {type(value).__name__} {value!r}")
    if value < 1:
        raise ValueError(f"create_model: {name} must be >= 1, got {value}")


def _check_args(name: object, out_channels: object, kwargs: dict) -> None:
    if not isinstance(name, str):
        raise TypeError(f"create_model: name must be a string such as 'unet' or 'smp:Unet', got {name!r}")
    heads = out_channels if isinstance(out_channels, Sequence) and not isinstance(out_channels, str) else None
    if heads is not None and not heads:
        raise ValueError("create_model: out_channels is an empty list; give an int or one int per head")
    for i, c in enumerate(heads if heads is not None else [out_channels]):
        _check_count(f"out_channels[{i}]" if heads is not None else "out_channels", c)
    for key, value in kwargs.items():  # sizes: ours (width, depth) and the libraries' (decoder_channels...)
        if key in ("in_channels", "width", "depth") or (re.search(r"channels|width|dim|queries", key)
                                                         and value is not None and not isinstance(value, str)):
            counts = value if isinstance(value, Sequence) else [value]
            for i, count in enumerate(counts):
                _check_count(f"{key}[{i}]" if counts is value else key, count)


def _total(out_channels: int | Sequence[int]) -> int:
    return out_channels if isinstance(out_channels, int) else sum(out_channels)


# what PyTorch says when an input is too small for a layer (normalisation statistics, pooling, a kernel)
TOO_SMALL = re.compile(r"more than 1 (value per channel|spatial element)|Output size is too small|Kernel size can't "
                       r"be greater|Padding size should be less|input image is smaller|smaller than kernel")


@contextmanager
def input_size_named(image: torch.Tensor, fix: str) -> Iterator[None]:
    """Turn a layer's complaint that ``image`` ``(B, C, H, W)`` is too small into a ``ValueError`` that
    gives its size and ``fix`` (the option that sets the size), instead of a library's traceback."""
    try:
        yield
    except (RuntimeError, ValueError) as e:
        if not TOO_SMALL.search(str(e)):
            raise
        raise ValueError(f"an input of {tuple(image.shape)} is too small for the network ({str(e).splitlines()[0]}); "
                         f"{fix}") from None


def create_model(name: str, out_channels: int | Sequence[int], weights: str | Path | None = None,
                 normalize: str | dict[str, Sequence[float]] | None = None, **kwargs) -> nn.Module:
    """Make a network whose forward maps ``(B, 3, H, W)`` to ``(B, sum(out_channels), H, W)``.

    Args:
        name: ``"unet"``, ``"segnet_mtl"``, or ``"smp:<Arch>"`` (e.g. ``"smp:Unet"``, ``"smp:FPN"``) with
            ``encoder=`` any segmentation_models_pytorch encoder name (``"tu-<timm name>"`` for timm's) and
            optionally ``encoder_weights=``: a local checkpoint of the backbone as torchvision or timm
            store it (see :func:`load_encoder_weights`), or a weights name
            such as ``"imagenet"``, which smp (timm for ``tu-`` encoders) takes from the Hugging Face
            Hub cache, downloading it on first use unless ``offline=True`` or ``DEJAVU_OFFLINE=1``.
        out_channels: output channels; a list gives ``segnet_mtl`` one head per entry (others sum it).
        weights: optional local state dict file for the whole network.
        normalize: normalise the input inside the network, ``(x - mean) / std`` on ``[0, 1]`` images:
            ``"imagenet"`` (what pretrained encoders expect), ``"clip"`` (CLIP's, for ``denseclip``),
            ``"inception"`` (0.5 and 0.5: the original ViTs', for ``transunet``) or ``{"mean": [...], "std": [...]}``.
            The data then stay in ``[0, 1]`` everywhere else, so DejaVu regenerates the real image,
            and the exported model takes raw images. ``None``: no normalisation.
        **kwargs: passed to the architecture.

    Raises:
        TypeError: ``name`` not a string, or ``out_channels`` / ``in_channels`` / ``width`` / ``depth``
            not ints.
        ValueError: unknown name, a size below 1, or weights that do not fit (naming the file and the
            first mismatch).
        FileNotFoundError: a weights file that does not exist, or encoder weights neither cached nor
            downloadable (naming them, the cache and the ways out).

    Example:
        >>> create_model("unet", 6, width=8)(torch.rand(1, 3, 32, 32)).shape
        torch.Size([1, 6, 32, 32])
    """
    _check_args(name, out_channels, kwargs)
    if name.startswith("smp:"):
        model = _smp(name[4:], out_channels, **kwargs)
    elif name in MODELS:
        model = MODELS[name](out_channels, **kwargs)
    else:
        raise ValueError(f"create_model: unknown model {name!r}; choose from {sorted(MODELS)} or 'smp:<Arch>'")
    if weights is not None:
        load_weights(model, weights)
    if normalize is not None:
        normalize_input(model, normalize)
    return model


NORMALIZATIONS = {"imagenet": {"mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225)},
                  "clip": {"mean": (0.48145466, 0.4578275, 0.40821073), "std": (0.26862954, 0.26130258, 0.27577711)},
                  "inception": {"mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5)}}


def normalize_input(model: nn.Module, normalize: str | dict[str, Sequence[float]]) -> None:
    """Make ``model`` normalise its input first (a forward pre-hook and two non-persistent buffers: the
    state dict is unchanged)."""
    spec = NORMALIZATIONS.get(normalize) if isinstance(normalize, str) else normalize
    if not isinstance(spec, dict) or set(spec) != {"mean", "std"} or any(len(spec[k]) != 3 for k in spec) \
            or min(spec["std"]) <= 0:
        raise ValueError(f"create_model: normalize must be one of {sorted(NORMALIZATIONS)} or "
                         f"{{mean: [3 numbers], std: [3 numbers > 0]}}, got {normalize!r}")
    model.register_buffer("input_mean", torch.tensor(spec["mean"]).view(1, 3, 1, 1), persistent=False)
    model.register_buffer("input_std", torch.tensor(spec["std"]).view(1, 3, 1, 1), persistent=False)
    model.register_forward_pre_hook(_normalise)


def _normalise(model: nn.Module, args: tuple) -> tuple:
    x, *rest = args
    return ((x - model.input_mean.to(x.dtype)) / model.input_std.to(x.dtype), *rest)


WRAPPERS = ("state_dict", "model", "state_dict_ema", "model_ema")  # where checkpoints keep the weights
PREFIXES = ("module.", "model.", "backbone.", "encoder.")  # DDP's, timm-in-smp's, detection-style


def load_encoder_weights(encoder: nn.Module, path: str | Path) -> dict[str, list[str]]:
    """Load a backbone checkpoint as torchvision or timm store it (e.g. ``resnet18-f37072fd.pth``,
    timm's ``model.safetensors``) into an encoder whose names differ by a prefix: smp's ResNet
    encoders are torchvision's ResNet without ``fc``; its ``tu-`` encoders hold timm's model as
    ``model.``. A checkpoint's wrapper (``state_dict``, ``model``...) and a ``module.`` prefix are
    undone; tensors the encoder has no use for (the classifier) are left out and reported.

    Returns:
        ``{"loaded": [...], "unused": [...]}``: the encoder's tensors that were loaded, and the file's
        that were not (its classifier, typically).

    Raises:
        FileNotFoundError: no such file.
        ValueError: an unreadable file, or one that leaves encoder tensors without a value or gives
            one of another shape (named, with the file: not this encoder's weights).
    """
    raw = read_file(path, "encoder weights file")
    for key in WRAPPERS:
        if isinstance(raw, dict) and isinstance(raw.get(key), dict):
            raw = raw[key]
    if not isinstance(raw, dict):
        raise ValueError(f"encoder weights file {path} holds {type(raw).__name__}, not a state dict")
    state = {k: v for k, v in raw.items() if isinstance(v, torch.Tensor)}
    own = encoder.state_dict()
    found, used = {}, set()
    for name in own:
        for candidate in _candidates(name):
            if candidate in state:
                found[name] = state[candidate]
                used.add(candidate)
                break
    diff = mismatch(own, found, optional=("num_batches_tracked",))  # found holds only the encoder's names
    if diff:
        raise ValueError(f"encoder weights file {path} does not fit the {type(encoder).__name__} encoder: {diff}; it "
                         "holds the weights of another architecture")
    encoder.load_state_dict(found, strict=False)
    return {"loaded": sorted(found), "unused": sorted(set(state) - used)}


def _candidates(name: str) -> list[str]:
    """The names an encoder tensor may have in a checkpoint: its own, without a wrapper prefix, with one."""
    bare = next((name[len(p):] for p in PREFIXES if name.startswith(p)), name)
    return [name, bare, *(p + bare for p in PREFIXES)]


def load_weights(model: nn.Module, path: str | Path, strict: bool = True) -> list[str]:
    """Load a local state dict (``torch.load(weights_only=True)`` or safetensors) into ``model``.

    With ``strict=False`` the tensors that are missing or of another shape (e.g. a new output head
    after pretraining) keep their current values; their names are returned. At least one tensor
    must load.

    Raises:
        FileNotFoundError: no such file.
        ValueError: an unreadable file (see :func:`dejavu.weights.read_tensors`), or tensors that do not
            match the model; the message names the file and the first missing, unexpected or
            differently shaped parameter.
    """
    path = Path(path).expanduser()
    state = read_tensors(path)
    own = model.state_dict()
    diff = mismatch(own, state)
    if not strict:
        reshaped = {k for k, _, _ in diff.reshaped}
        usable = {k: v for k, v in state.items() if k in own and k not in reshaped}
        if not usable:
            raise ValueError(f"weights file {path} shares no parameter (name and shape) with the model")
        model.load_state_dict(usable, strict=False)
        return sorted(set(diff.missing) | reshaped)
    if diff:
        raise ValueError(f"weights file {path} does not match the model: {diff}")
    model.load_state_dict(state)
    return []
