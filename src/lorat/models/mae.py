"""Reading MAE / timm ViT backbones and OSTrack training checkpoints without running foreign code.

Two kinds of PyTorch files reach OSTrack:

* the MAE ImageNet backbone ``mae_pretrain_vit_base.pth``: ``torch.save({"model": state_dict})`` in the
  timm ``VisionTransformer`` layout (``cls_token``, ``pos_embed`` (1, 1+14*14, C), ``patch_embed.proj.*``,
  ``blocks.N.{norm1,attn.qkv,attn.proj,norm2,mlp.fc1,mlp.fc2}.*``, ``norm.*``); safetensors copies of it
  are read too;
* OSTrack / LoReTrack training checkpoints ``OSTrack_ep0300.pth.tar``: ``torch.save`` of a dict whose
  ``net`` entry is the model state dict, next to objects of the training code (``settings``, ...).

``torch.load(weights_only=True)`` refuses the second kind because of those objects. :func:`read_torch_weights`
then reloads the file through a restricted unpickler that resolves only the globals a tensor needs
(``torch._utils._rebuild_tensor_v2``, ``_rebuild_parameter``, ``OrderedDict``, ``torch.Size``) and maps
every other global to an inert placeholder class (it stores what the pickle hands it and runs nothing);
only the tensor dict is kept. No code named by the file is imported or executed.
"""
from __future__ import annotations

import collections
import pickle
import re
import types
from pathlib import Path

import torch

StateDict = dict[str, torch.Tensor]

# Containers of a state dict inside a torch.save'd dict, in the order they are tried.
_CONTAINERS = ("net", "model", "state_dict", "module")
# timm / MAE keys a tracker backbone does not use.
_IGNORED_MAE = re.compile(r"(head|fc_norm|pre_logits)\.|mask_token$|decoder_|dist_token$")
_MAE_BLOCK = re.compile(r"blocks\.(\d+)\.(norm1|norm2|attn\.qkv|attn\.proj|mlp\.fc1|mlp\.fc2)\.(weight|bias)$")


class WeightsFileError(ValueError):
    """A weights file that cannot be used; the message names the file and what is wrong."""


class _Inert:
    """Stand-in for a class or function named in a pickle: accepts any construction, executes nothing."""

    def __init__(self, *args, **kwargs) -> None:
        self._args, self._kwargs = args, kwargs

    def __setstate__(self, state) -> None:
        self._state = state


def _inert_for(name: str) -> type:
    return type(f"Inert[{name}]", (_Inert,), {"__module__": __name__})


# Globals a state dict needs; everything else in the pickle becomes an inert placeholder.
_ALLOWED = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): torch._utils._rebuild_parameter,
    ("torch", "Size"): torch.Size,
}


class _RestrictedUnpickler(pickle.Unpickler):
    """Resolves only :data:`_ALLOWED` globals (tensor rebuilding); every other global, whatever its module,
    is replaced by a fresh :class:`_Inert` subclass, so nothing named by the file is imported or run."""

    def find_class(self, module: str, name: str):
        obj = _ALLOWED.get((module, name))
        return obj if obj is not None else _inert_for(f"{module}.{name}")


_restricted_pickle = types.ModuleType("lorat_restricted_pickle")
_restricted_pickle.Unpickler = _RestrictedUnpickler
_restricted_pickle.load = lambda f, **kw: _RestrictedUnpickler(f, **kw).load()
_restricted_pickle.__name__ = "lorat_restricted_pickle"


def _first_line(e: Exception) -> str:
    return f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}"


def _load(path: Path):
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as first:  # foreign globals (e.g. the training settings object)
        try:
            # weights_only=False only hands the restricted unpickler to torch: its find_class decides
            return torch.load(path, map_location="cpu", weights_only=False, pickle_module=_restricted_pickle)
        except Exception as e:
            raise WeightsFileError(
                f"{path}: cannot be read safely ({_first_line(first)}; restricted reader: {_first_line(e)}); "
                "convert it once where it was made: torch.save(torch.load(f)['net'], 'net.pth') or save the "
                "state dict as safetensors") from None
    except Exception as e:
        raise WeightsFileError(f"{path}: cannot be read as a PyTorch weights file ({_first_line(e)})") from None


def read_torch_weights(path: str | Path) -> StateDict:
    """The tensor state dict of a PyTorch (zip) file: a bare state dict or one under ``net`` / ``model`` /
    ``state_dict`` / ``module``; a ``module.`` (DataParallel) prefix is removed."""
    path = Path(path)
    obj = _load(path)
    while isinstance(obj, dict) and not any(isinstance(v, torch.Tensor) for v in obj.values()):
        inner = [k for k in _CONTAINERS if isinstance(obj.get(k), dict)]
        if not inner:
            break
        obj = obj[inner[0]]
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        keys = sorted(obj)[:10] if isinstance(obj, dict) else type(obj).__name__
        raise WeightsFileError(f"{path}: holds no state dict (a dict of tensors, possibly under 'net' or "
                               f"'model'); found {keys}")
    return {k.removeprefix("module."): v.detach() for k, v in obj.items()}


def read_weights(path: str | Path) -> StateDict:
    """Tensors of a safetensors file or of a PyTorch file (see :func:`read_torch_weights`)."""
    from ..hub import read_state_file

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path}")
    with open(path, "rb") as f:
        head = f.read(4)
    if head == b"PK\x03\x04":
        return read_torch_weights(path)
    tensors, _ = read_state_file(path)
    return tensors


def mae_depth(sd: StateDict) -> int:
    """Number of transformer blocks in a MAE / timm ViT state dict."""
    return 1 + max((int(m[1]) for k in sd if (m := _MAE_BLOCK.match(k))), default=-1)


def check_mae_layout(sd: StateDict, source: str = "state dict") -> StateDict:
    """Validate a MAE / timm ViT state dict and return its backbone tensors as float32.

    Drops classifier / decoder keys (``head.*``, ``fc_norm.*``, ``decoder_*`` ...). Raises
    :class:`WeightsFileError` naming missing or unknown keys (e.g. an OSTrack checkpoint or a DINOv2 file
    passed as the backbone).
    """
    if any(k.startswith(("backbone.", "box_head.")) for k in sd):
        raise WeightsFileError(f"{source}: is an OSTrack checkpoint (backbone.*/box_head.* keys), not a MAE "
                               "backbone; load it with lorat.load_checkpoint(path, name=...)")
    if "token_type_embed" in sd or any(".ls1.gamma" in k for k in sd):
        raise WeightsFileError(f"{source}: is a DINOv2/LoRAT file (LayerScale or token-type keys), not a MAE "
                               "ViT backbone with patch 16")
    out = {k: v.float() for k, v in sd.items() if not _IGNORED_MAE.match(k)}
    required = ["cls_token", "pos_embed", "patch_embed.proj.weight", "patch_embed.proj.bias", "norm.weight",
                "norm.bias"]
    missing = [k for k in required if k not in out]
    depth = mae_depth(out)
    if depth <= 0:
        missing.append("blocks.0.*")
    unknown = sorted(k for k in out if k not in required and not _MAE_BLOCK.match(k))
    if missing or unknown:
        raise WeightsFileError(f"{source}: not a MAE/timm ViT backbone: missing {missing}, unknown keys "
                               f"{unknown[:10]}")
    return out


def read_mae(path: str | Path) -> StateDict:
    """Read a MAE / timm ViT backbone file (``.pth`` with a ``model`` entry, or safetensors), float32."""
    return check_mae_layout(read_weights(path), source=str(path))


__all__ = ["WeightsFileError", "read_torch_weights", "read_weights", "read_mae", "check_mae_layout", "mae_depth"]
