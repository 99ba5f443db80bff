"""Box and point prompt inputs as tensors: `fastsam_core.prompt_inputs` (the one torch-free
parser, shared with the ONNX runtime) with its rows converted to CPU tensors (issue #4, "Bad
input"). Messages, clipping and dtypes are those of `prompt_inputs`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from fastsam_core import prompt_inputs
from fastsam_core.prompt_inputs import BoxFormat, parse_texts

__all__ = ["BoxFormat", "parse_boxes", "parse_points", "parse_texts"]


def parse_boxes(
    boxes: Any,
    image_hw: Sequence[int] | None = None,
    box_format: BoxFormat = "xyxy",
) -> torch.Tensor:
    """`prompt_inputs.parse_boxes` as a tensor: (M, 4) float64 xyxy (clipped with image_hw)."""
    return torch.from_numpy(prompt_inputs.parse_boxes(boxes, image_hw, box_format))


def parse_points(
    points: Any,
    labels: Any,
    image_hw: Sequence[int] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """`prompt_inputs.parse_points` as tensors: points (P, 2) float64, labels (P,) int64."""
    rows, values = prompt_inputs.parse_points(points, labels, image_hw)
    return torch.from_numpy(rows), torch.from_numpy(values)
