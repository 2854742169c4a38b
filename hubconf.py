"""torch.hub entry points: each returns a :class:`cwm.predictor.CWMPredictor`.

From a clone (or any checkout of this repository)::

    predictor = torch.hub.load("path/to/cwm", "default", source="local")
    predictor = torch.hub.load("path/to/cwm", "eccv2024_2frame", source="local", device="cuda")

``default`` is the small model shipped in the package; it runs offline. The official releases
load from cwm's weights cache (``$CWM_CACHE`` or ``~/.cache/cwm``): run
``cwm weights download NAME`` once, or pass ``download=True``. Nothing is downloaded otherwise.
"""
import cwm as _cwm

dependencies = ["torch", "timm", "einops", "numpy", "scipy", "cv2", "PIL", "safetensors"]


def _release(name: str, device, download: bool):
    if download:
        from cwm import hub

        hub.download(name)
    return _cwm.load(name, device=device)


def default(device=None):
    """The small CWM trained by cwm on synthetic scenes (64x64, patch 8), shipped in the package."""
    return _cwm.load("default", device=device)


def cwm2023_base_8x8(device=None, download: bool = False):
    """Official 2023 ViT-B, 8x8 patches, 2 frames, 224 px (cwm name: cwm2023-base-8x8)."""
    return _release("cwm2023-base-8x8", device, download)


def cwm2023_large_4x4(device=None, download: bool = False):
    """Official 2023 ViT-L, 4x4 patches, 2 frames, 224 px (cwm name: cwm2023-large-4x4)."""
    return _release("cwm2023-large-4x4", device, download)


def eccv2024_2frame(device=None, download: bool = False):
    """Official ECCV 2024 ViT-B/8, 2 frames, 224 px (cwm name: eccv2024-2frame)."""
    return _release("eccv2024-2frame", device, download)


def eccv2024_3frame(device=None, download: bool = False):
    """Official ECCV 2024 ViT-B/8, 3 frames, 224 px (cwm name: eccv2024-3frame)."""
    return _release("eccv2024-3frame", device, download)
