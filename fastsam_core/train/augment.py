"""Training augmentations in torch/PIL (no OpenCV): mosaic, scale/translate jitter, flip, HSV.

Every random choice comes from the `numpy.random.Generator` passed in, so a sample is a pure
function of (seed, epoch, index): identical across runs, worker counts and DDP ranks. Geometry is
applied to the image (bilinear) and to the full-resolution instance masks (nearest) with one
`grid_sample` per warp; boxes are recomputed from the warped masks afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from fastsam_core.ops.letterbox import PAD_VALUE  # the grey inference pads with (spec §3.3)


@dataclass(frozen=True)
class AugmentConfig:
    """Augmentation settings (defaults follow ultralytics' default.yaml, spec §6).

    Attributes:
        mosaic: probability of a 4-image mosaic.
        fliplr: probability of a horizontal flip.
        hsv_h, hsv_s, hsv_v: maximum relative hue / saturation / value gains.
        scale: scale jitter, the zoom is drawn from [1 - scale, 1 + scale].
        translate: maximum shift as a fraction of the output size.
    """

    mosaic: float = 1.0
    fliplr: float = 0.5
    hsv_h: float = 0.015
    hsv_s: float = 0.7
    hsv_v: float = 0.4
    scale: float = 0.5
    translate: float = 0.1

    def without_mosaic(self) -> AugmentConfig:
        return AugmentConfig(
            0.0, self.fliplr, self.hsv_h, self.hsv_s, self.hsv_v, self.scale, self.translate
        )


NO_AUGMENT = AugmentConfig(
    mosaic=0.0, fliplr=0.0, hsv_h=0.0, hsv_s=0.0, hsv_v=0.0, scale=0.0, translate=0.0
)


def warp(
    image: torch.Tensor,
    masks: torch.Tensor,
    out_hw: tuple[int, int],
    scale: float,
    src_centre: tuple[float, float],
    shift: tuple[float, float] = (0.0, 0.0),
) -> tuple[torch.Tensor, torch.Tensor]:
    """Zoom about `src_centre` and place it at the output centre plus `shift`.

    Output pixel centre u maps to source x = (u - out_w / 2 - shift_x) / scale + centre_x
    (same in y).

    Args:
        image: (3, H, W) uint8.
        masks: (N, H, W) bool.
        out_hw: (Ho, Wo) output size.
        scale: output pixels per source pixel.
        src_centre: (x, y) source point that lands at the output centre.
        shift: (dx, dy) output-pixel offset of that point from the output centre.

    Returns:
        (3, Ho, Wo) uint8 padded with 114, and (N, Ho, Wo) bool.
    """
    _, H, W = image.shape
    Ho, Wo = out_hw
    u = torch.arange(Wo, dtype=torch.float32) + 0.5
    v = torch.arange(Ho, dtype=torch.float32) + 0.5
    x = (u - Wo / 2 - shift[0]) / scale + src_centre[0]  # (Wo,) source x of each column centre
    y = (v - Ho / 2 - shift[1]) / scale + src_centre[1]  # (Ho,)
    gx = (2 * x / W - 1).view(1, Wo).expand(Ho, Wo)  # align_corners=False normalisation
    gy = (2 * y / H - 1).view(Ho, 1).expand(Ho, Wo)
    grid = torch.stack((gx, gy), -1).unsqueeze(0)  # (1, Ho, Wo, 2)
    shifted = image.float().unsqueeze(0) - PAD_VALUE  # pad with 0 here == 114 after shifting back
    out = F.grid_sample(shifted, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    out_image = (out[0] + PAD_VALUE).round().clamp(0, 255).to(torch.uint8)  # (3, Ho, Wo)
    if masks.shape[0] == 0:
        return out_image, torch.zeros(0, Ho, Wo, dtype=torch.bool)
    m = F.grid_sample(
        masks.float().unsqueeze(0), grid, mode="nearest", padding_mode="zeros", align_corners=False
    )
    return out_image, m[0] > 0.5


def fit_long_side(
    image: torch.Tensor, masks: torch.Tensor, size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Resize so the longer side equals `size` (aspect kept), image bilinear, masks nearest."""
    _, H, W = image.shape
    r = size / max(H, W)
    h, w = max(1, round(H * r)), max(1, round(W * r))
    return warp(image, masks, (h, w), r, (W / 2, H / 2))


def mosaic4(
    parts: list[tuple[torch.Tensor, torch.Tensor]], size: int, rng: np.random.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Tile four (image, masks) pairs around a random centre of a (2S, 2S) canvas.

    Image k is first resized to long side S; the top-left image ends at the centre, the top-right
    starts there horizontally, and so on. Returns the canvas (3, 2S, 2S) and all masks (N, 2S, 2S).
    """
    S = size
    xc, yc = (int(rng.uniform(S / 2, 3 * S / 2)) for _ in range(2))
    canvas = torch.full((3, 2 * S, 2 * S), PAD_VALUE, dtype=torch.uint8)
    all_masks = []
    for k, (image, masks) in enumerate(parts):
        image, masks = fit_long_side(image, masks, S)
        _, h, w = image.shape
        # Destination box on the canvas, clipped, and the matching source box.
        x0, y0 = (
            (xc - w, yc - h)
            if k == 0
            else (xc, yc - h)
            if k == 1
            else (xc - w, yc)
            if k == 2
            else (xc, yc)
        )
        dx0, dy0, dx1, dy1 = max(x0, 0), max(y0, 0), min(x0 + w, 2 * S), min(y0 + h, 2 * S)
        sx0, sy0 = dx0 - x0, dy0 - y0
        sx1, sy1 = sx0 + (dx1 - dx0), sy0 + (dy1 - dy0)
        canvas[:, dy0:dy1, dx0:dx1] = image[:, sy0:sy1, sx0:sx1]
        placed = torch.zeros(masks.shape[0], 2 * S, 2 * S, dtype=torch.bool)
        placed[:, dy0:dy1, dx0:dx1] = masks[:, sy0:sy1, sx0:sx1]
        all_masks.append(placed)
    return canvas, torch.cat(all_masks)


def random_zoom_shift(
    image: torch.Tensor,
    masks: torch.Tensor,
    size: int,
    base_scale: float,
    cfg: AugmentConfig,
    rng: np.random.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Scale jitter and translation about the source centre into a (size, size) output."""
    _, H, W = image.shape
    zoom = rng.uniform(1 - cfg.scale, 1 + cfg.scale)
    shift = (
        rng.uniform(-cfg.translate, cfg.translate) * size,
        rng.uniform(-cfg.translate, cfg.translate) * size,
    )
    return warp(image, masks, (size, size), base_scale * zoom, (W / 2, H / 2), shift)


def hsv_jitter(image: torch.Tensor, cfg: AugmentConfig, rng: np.random.Generator) -> torch.Tensor:
    """Random hue shift and saturation/value gains through PIL's HSV mode (H, S, V in 0..255)."""
    gains = rng.uniform(-1, 1, 3) * np.array([cfg.hsv_h, cfg.hsv_s, cfg.hsv_v]) + 1
    if not np.any(gains != 1):
        return image
    hsv = np.array(
        Image.fromarray(image.permute(1, 2, 0).numpy()).convert("HSV")
    )  # (H, W, 3) uint8
    x = np.arange(256, dtype=np.float64)
    luts = (
        ((x * gains[0]) % 256).astype(np.uint8),
        np.clip(x * gains[1], 0, 255).astype(np.uint8),
        np.clip(x * gains[2], 0, 255).astype(np.uint8),
    )
    for c in range(3):
        hsv[..., c] = luts[c][hsv[..., c]]
    rgb = np.asarray(Image.fromarray(hsv, "HSV").convert("RGB"))
    return torch.from_numpy(rgb.copy()).permute(2, 0, 1).contiguous()  # (H, W, 3) -> (3, H, W)


def masks_to_boxes(masks: torch.Tensor) -> torch.Tensor:
    """(N, H, W) bool -> (N, 4) xyxy pixel-edge boxes (x2, y2 exclusive); empty masks give zeros."""
    N = masks.shape[0]
    if N == 0:
        return torch.zeros(0, 4)
    cols = masks.any(1)  # (N, W)
    rows = masks.any(2)  # (N, H)
    W, H = cols.shape[1], rows.shape[1]
    ar_w = torch.arange(W)
    ar_h = torch.arange(H)
    x1 = torch.where(cols, ar_w, W).amin(1)
    x2 = torch.where(cols, ar_w + 1, 0).amax(1)
    y1 = torch.where(rows, ar_h, H).amin(1)
    y2 = torch.where(rows, ar_h + 1, 0).amax(1)
    boxes = torch.stack((x1, y1, x2, y2), 1).float()
    return boxes * (masks.flatten(1).any(1, keepdim=True))


def downsample_masks(masks: torch.Tensor, factor: int) -> torch.Tensor:
    """(N, H, W) bool -> (N, H / factor, W / factor) uint8: majority of each factor^2 cell."""
    if masks.shape[0] == 0:
        return torch.zeros(0, masks.shape[1] // factor, masks.shape[2] // factor, dtype=torch.uint8)
    pooled = F.avg_pool2d(masks.float().unsqueeze(1), factor)  # (N, 1, H/f, W/f)
    return (pooled[:, 0] >= 0.5).to(torch.uint8)
