"""Inference fast path: prepare a YoloV8Seg for fast repeated forward passes (issue 6).

The plain path is `model(x)` on a fused, fp32, NCHW model (what `Predictor` does with
`fast=False`; the parity tests pin it). `InferenceRunner` is the same function made faster, option
by option (`FastOptions`); each option is tested against the plain path in
`tests/unit/test_runtime.py`. `Predictor`'s default (`fast=True`) is the "default" preset
(channels_last only). The options:

* `channels_last`: NHWC activations (oneDNN's native layout on CPU, tensor cores on GPU).
* `compile`: `torch.compile` of the network (inductor, weight freezing on CPU). The first call
  per input shape compiles; that time is reported in `compile_seconds`, never in timed calls.
  Without `bucket` the graph is compiled with symbolic batch/H/W (`dynamic=True`), so one
  graph serves every image size, with outputs equal to the plain path (no padding).
* `bucket`: pad the letterbox input at the bottom/right to multiples of `bucket` px (pad value
  114) so shapes repeat exactly (what CUDA graphs need); head outputs are cropped back to the
  unpadded anchors/prototypes. The network sees the padding through its receptive field, so
  outputs move (measured: far beyond 99.9 % mask agreement on random-weight nets). Therefore
  bucket is only used with `cuda_graphs`, never by a default preset.
* `autocast`: "fp16"/"bf16" autocast for the network only; head outputs are cast back to fp32,
  so DFL decoding, box math and NMS stay fp32 (fp16 is documented separately from the
  99.9 % mask agreement of the fp32 options).
* `cuda_graphs`: CUDA only: `torch.compile(mode="reduce-overhead")` (CUDA graphs for fixed
  shapes); needs `bucket` so shapes repeat. Not run on the CPU-only machine of this project.
* inputs: uint8 batches go to the device before the float conversion (a quarter of the bytes);
  on CUDA through pinned memory with `non_blocking=True`. The runner itself never
  synchronises with the host.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F

from fastsam_core.model.head import SegOutput
from fastsam_core.model.yolov8_seg import YoloV8Seg
from fastsam_core.ops.letterbox import PAD_VALUE  # bucket padding uses the letterbox grey

logger = logging.getLogger(__name__)

Autocast = Literal["off", "fp16", "bf16"]
_AUTOCAST_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}


@dataclass(frozen=True)
class FastOptions:
    """Which speed-ups `InferenceRunner` applies (see the module docstring for each).

    Attributes:
        channels_last: NHWC weights and activations.
        compile: `torch.compile` the network (inductor); compile time reported separately.
        compile_mode: `torch.compile` mode (None = default); "reduce-overhead" = CUDA graphs.
        freezing: inductor weight freezing/prepacking (CPU oneDNN), only with `compile`.
        bucket: pad H and W up to multiples of this many px (a multiple of 32), or None.
        autocast: "off", "fp16" or "bf16" for the network (outputs back to fp32).
        cuda_graphs: CUDA graphs through compile mode "reduce-overhead" (CUDA only, needs bucket).
    """

    channels_last: bool = True
    compile: bool = False
    compile_mode: str | None = None
    freezing: bool = True
    bucket: int | None = None
    autocast: Autocast = "off"
    cuda_graphs: bool = False

    def validated(self, device: torch.device) -> FastOptions:
        """Check the fields against `device`; raises ValueError naming the field and the fix."""
        if self.bucket is not None and (
            isinstance(self.bucket, bool)
            or not isinstance(self.bucket, int)
            or self.bucket <= 0
            or self.bucket % 32
        ):
            raise ValueError(
                f"bucket must be a positive multiple of 32 or None, got {self.bucket!r}"
            )
        if self.autocast not in ("off", "fp16", "bf16"):
            raise ValueError(f"autocast must be 'off', 'fp16' or 'bf16', got {self.autocast!r}")
        if self.autocast == "fp16" and device.type == "cpu":
            raise ValueError(
                "autocast='fp16' is for GPUs (CPU fp16 convs are slow); use 'bf16' or 'off'"
            )
        if self.cuda_graphs:
            if device.type != "cuda":
                raise ValueError(
                    f"cuda_graphs=True needs a CUDA device, got {device}; set cuda_graphs=False"
                )
            if self.bucket is None:
                raise ValueError(
                    "cuda_graphs=True needs fixed shapes: set bucket (e.g. bucket=1024)"
                )
        return self


# Named presets for the `fast=` argument of Predictor / the CLI. "default" holds only what is a
# clear win on every device measured (bench/RESULTS.md); compile costs minutes of start-up on CPU.
FAST_PRESETS: dict[str, FastOptions | None] = {
    "off": None,
    "default": FastOptions(),
    "compile": FastOptions(compile=True),
    "bf16": FastOptions(autocast="bf16"),
    "compile-bf16": FastOptions(compile=True, autocast="bf16"),
    "gpu": FastOptions(autocast="fp16"),
    "gpu-graphs": FastOptions(compile=True, autocast="fp16", bucket=256, cuda_graphs=True),
}


def resolve_fast(fast: bool | str | FastOptions | None) -> FastOptions | None:
    """`fast` argument -> FastOptions (or None = plain path). True = "default", False = "off"."""
    if fast is None or fast is False:
        return None
    if fast is True:
        return FAST_PRESETS["default"]
    if isinstance(fast, FastOptions):
        return fast
    if isinstance(fast, str):
        if fast not in FAST_PRESETS:
            raise ValueError(
                f"unknown fast preset {fast!r}; expected one of {sorted(FAST_PRESETS)}"
            )
        return FAST_PRESETS[fast]
    raise TypeError(f"fast must be a bool, a preset name or FastOptions, got {type(fast).__name__}")


def bucket_shape(hw: tuple[int, int], bucket: int | None) -> tuple[int, int]:
    """(H, W) rounded up to multiples of `bucket` (unchanged for None)."""
    if bucket is None:
        return hw
    return (-(-hw[0] // bucket) * bucket, -(-hw[1] // bucket) * bucket)


def crop_output(out: SegOutput, hw: tuple[int, int], strides: tuple[int, ...]) -> SegOutput:
    """Head outputs of a bottom/right-padded input cropped to the anchors of an (H, W) input.

    Args:
        out: outputs of the padded input (levels concatenated, row-major per level).
        hw: the unpadded input size (multiples of the largest stride).
        strides: the level strides (8, 16, 32).
    """
    sizes = tuple((hw[0] // s, hw[1] // s) for s in strides)
    if sizes == tuple(out.feature_sizes):
        return out

    def crop(t: torch.Tensor) -> torch.Tensor:  # (B, C, A_padded) -> (B, C, A)
        levels = t.split([h * w for h, w in out.feature_sizes], dim=2)
        kept = [
            lv.unflatten(2, padded)[:, :, :h, :w].flatten(2)  # (B, C, Hp, Wp) -> (B, C, h * w)
            for lv, padded, (h, w) in zip(levels, out.feature_sizes, sizes)
        ]
        return torch.cat(kept, dim=2)

    proto_h, proto_w = hw[0] // 4, hw[1] // 4
    return SegOutput(
        box_dist=crop(out.box_dist),
        class_logits=crop(out.class_logits),
        mask_coeffs=crop(out.mask_coeffs),
        protos=out.protos[:, :, :proto_h, :proto_w],
        feature_sizes=sizes,
    )


class InferenceRunner:
    """A fused YoloV8Seg prepared for inference: `runner.to_input(uint8)` then `runner(x)`.

    Args:
        model: the (usually Conv+BN fused) network; with channels_last it is converted in place.
        device: where the model lives.
        options: FastOptions, or None for the plain path (fp32 NCHW eager, as `model(x)`).

    `runner(x)` returns the same `SegOutput` as `model(x)` (fp32, unpadded shapes).
    `compile_seconds` maps each compiled input shape (B, H, W) to its first-call time.
    """

    def __init__(
        self, model: YoloV8Seg, device: torch.device, options: FastOptions | None = None
    ) -> None:
        self.device = torch.device(device)
        self.options = options.validated(self.device) if options is not None else None
        self.model = model
        self.compile_seconds: dict[tuple[int, int, int], float] = {}
        self._network: Any = model
        if self.options is None:
            return
        if self.options.channels_last:
            self.model = model.to(memory_format=torch.channels_last)
        if self.options.compile:
            mode = "reduce-overhead" if self.options.cuda_graphs else self.options.compile_mode
            compile_options: dict[str, Any] | None = (
                {"freezing": True} if self.options.freezing and mode is None else None
            )
            self._network = torch.compile(
                self.model, mode=mode, options=compile_options,
                dynamic=self.options.bucket is None,  # one symbolic-H/W graph for every size
            )  # fmt: skip

    @property
    def strides(self) -> tuple[int, ...]:
        return tuple(self.model.cfg.strides)

    def to_input(self, batch: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) uint8 letterboxed RGB on the host -> float32 [0, 1] on the device.

        Equals `batch.to(device).float() / 255` exactly; the copy moves uint8 (4x fewer bytes),
        through pinned memory with a non-blocking copy on CUDA.
        """
        if batch.dtype != torch.uint8 or batch.ndim != 4 or batch.shape[1] != 3:
            raise ValueError(
                f"expected a (B, 3, H, W) uint8 batch, got {tuple(batch.shape)} {batch.dtype}"
            )
        if self.device.type == "cuda" and self.options is not None:
            batch = batch.pin_memory().to(self.device, non_blocking=True)
        else:
            batch = batch.to(self.device)
        x = batch.float() / 255.0  # (B, 3, H, W) RGB in [0, 1] (spec §3.4), batch's layout
        if self.options is not None and self.options.channels_last:
            return x.contiguous(memory_format=torch.channels_last)  # no copy for an NHWC batch
        return x.contiguous()  # the plain path runs NCHW

    def __call__(self, x: torch.Tensor) -> SegOutput:
        """(B, 3, H, W) float [0, 1] -> SegOutput of the unpadded input, fp32."""
        if self.options is None:
            with torch.inference_mode():
                return self.model(x)
        hw = (int(x.shape[2]), int(x.shape[3]))
        padded_hw = bucket_shape(hw, self.options.bucket)
        if padded_hw != hw:  # grey padding at the bottom/right, like the predictor's batches
            x = F.pad(
                x, (0, padded_hw[1] - hw[1], 0, padded_hw[0] - hw[0]), value=PAD_VALUE / 255.0
            )
            if self.options.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            out = self._forward(x)
            out = crop_output(out, hw, self.strides)
            if self.options.autocast != "off" or self.options.cuda_graphs:
                # back to fp32 (box math and NMS stay fp32); own copies: CUDA graph outputs are
                # overwritten by the next replay
                def owned(t: torch.Tensor) -> torch.Tensor:
                    return t.float() if t.dtype != torch.float32 else t.clone()

                out = SegOutput(
                    box_dist=owned(out.box_dist),
                    class_logits=owned(out.class_logits),
                    mask_coeffs=owned(out.mask_coeffs),
                    protos=owned(out.protos),
                    feature_sizes=out.feature_sizes,
                )
        return out

    def _forward(self, x: torch.Tensor) -> SegOutput:
        assert self.options is not None
        key = (int(x.shape[0]), int(x.shape[2]), int(x.shape[3]))
        first = self.options.compile and key not in self.compile_seconds
        start = time.perf_counter() if first else 0.0
        if self.options.autocast != "off":
            dtype = _AUTOCAST_DTYPES[self.options.autocast]
            with torch.autocast(self.device.type, dtype=dtype):
                out = self._network(x)
        else:
            out = self._network(x)
        if first:
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)  # once per new shape, outside the hot loop
            self.compile_seconds[key] = time.perf_counter() - start
            logger.info(
                "compiled the network for input %s in %.1f s", key, self.compile_seconds[key]
            )
        return out

    def describe(self) -> dict[str, Any]:
        """Options and compile times, for benchmark records."""
        return {
            "options": dataclasses.asdict(self.options) if self.options is not None else None,
            "compile_seconds": {f"{b}x{h}x{w}": s for (b, h, w), s in self.compile_seconds.items()},
        }
