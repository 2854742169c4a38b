"""cwm: Counterfactual World Models.

Importing ``cwm`` is cheap and silent: torch and the model code load on first use.

>>> import cwm
>>> predictor = cwm.load("default")            # the small model shipped with the package
>>> result = predictor.flow(frame0, frame1)    # numpy uint8 [H, W, 3] RGB in, pixels out
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cwm.errors import CWMError, ConfigError, InputError, WeightsError

__version__ = "0.1.0"
__all__ = ["load", "save_official", "save_pretrained", "build_model", "CWMConfig", "VARIANTS",
           "CWMError", "InputError", "WeightsError", "ConfigError", "__version__"]

if TYPE_CHECKING:
    from cwm.predictor import CWMPredictor


def load(name_or_path: str = "default", device: Any = None, heads: tuple[int, int] | None = None) -> "CWMPredictor":
    """Load weights into a :class:`cwm.predictor.CWMPredictor`.

    Args:
        name_or_path: a weights folder (``model.safetensors`` + ``config.json``), a
            ``.safetensors`` file, or an official ``.pth`` file (read with ``weights_only=True``,
            converted on load); else a registered name (``cwm weights list``); else a Hugging
            Face hub repository id ``org/name`` in our layout (needs ``huggingface_hub``). An
            existing path always wins.
        device: ``"cpu"``, ``"cuda"``, a ``torch.device``, or None for CUDA when available.
        heads: ``(encoder_heads, decoder_heads)`` for official files that are not a known release.
    Raises:
        WeightsError: with a one-line message naming the file and the problem.
        ConfigError: a bad ``device`` (not a device, or not available here), or a bad
            ``config.json`` beside the weights.
    """
    from cwm.checkpoints import load_model
    from cwm.predictor import CWMPredictor, resolve_device

    device = resolve_device(device)  # before loading: a typo should not wait for the weights
    return CWMPredictor(load_model(name_or_path, heads=heads), device=device)


def __getattr__(name: str) -> Any:
    # Lazy attributes keep `import cwm` free of torch.
    if name in ("save_official", "save_pretrained"):
        from cwm import checkpoints

        return getattr(checkpoints, name)
    if name == "build_model":
        from cwm.model import build_model

        return build_model
    if name in ("CWMConfig", "VARIANTS"):
        from cwm import config

        return getattr(config, name)
    raise AttributeError(f"module 'cwm' has no attribute '{name}'")
