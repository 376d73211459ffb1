"""lorat: one-stream Transformer visual object tracking (LoRAT, LoReTrack, SPMTrack) in PyTorch.

Public API::

    import lorat
    lorat.list_models()                                   # preset names
    model = lorat.create_model("lorat-b-224", pretrained="dinov2_vitb14_pretrain.pth")
    model = lorat.load_checkpoint("LoRAT-B-224.bin", name="lorat-b-224", pretrained="dinov2_vitb14_pretrain.pth")
    tracker = lorat.Tracker(model)                        # the architecture's tracker; initialize / track
    tracker = lorat.Tracker(model, lorat.TrackConfig(dtype="float32"))  # precision: auto (default) | ...
"""
__version__ = "0.1.0"

from .config import PRESETS, ModelConfig  # noqa: E402
from .hub import load_checkpoint, save_checkpoint  # noqa: E402
from .models.registry import create_model, get_preset, list_models  # noqa: E402
from .track.tracker import TrackConfig, Tracker  # noqa: E402

__all__ = ["ModelConfig", "PRESETS", "get_preset", "create_model", "list_models", "load_checkpoint",
           "save_checkpoint", "Tracker", "TrackConfig", "__version__"]
