"""Everything mode end to end: images in, per-image `Results` out (spec §3).

Pipeline per batch: decode (`io.images`) -> letterbox (`ops.letterbox`) -> uint8 / 255 -> fused
YoloV8Seg -> DFL decode + anchors (`ops.anchors`) -> sigmoid scores -> NMS (`ops.nms`) -> FastSAM
full-image box step (`full_image_box`) -> masks (`mask_backends`, reference = `ops.masks`) -> boxes
scaled to the original image (`ops.boxes`) -> `Results`.

Two post-processing references (spec §3.7, §3.8), chosen by `postprocess`:

* "official" (default): the FastSAM repository (ultralytics 8.0.120 with logit > 0 thresholds).
  Its full-image box step runs in letterbox space before the masks are built. Two deliberate
  differences from the reference, both documented here:
  - the reference applies the step to **image 0 of each batch only** (a list passed in one call
    is one batch; the files of a directory are batches of one); we apply it to every image
    (`full_box="every_image"`); `full_box="first_image"` restores the reference behaviour
    (image 0 of each `batch_size` chunk);
  - with two or more near-full-image boxes the reference crashes and returns None; we replace
    every such box by the full box and log a warning once.
* "ultralytics": ultralytics 8.4.190's FastSAMPredictor (masks then boxes, empty masks dropped,
  full-image box applied to the returned boxes only).

Batching: images whose letterboxed shapes are equal form one batch exactly as in the reference.
Images of different sizes keep their own letterbox geometry (as if alone) and are padded with the
pad value at the bottom/right to the largest shape; anchors outside an image's own area are ignored
and its prototypes are cropped to its own area, so each image gets the same candidates as alone.
The network still sees the extra padding through its receptive field, so such a batch can differ
slightly from one-by-one results. (The reference instead pads every image to the full square
`imgsz` when shapes differ.) `batch_size=1` (the default) is exact.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, cast

import torch

from fastsam_core.compact_masks import CompactMasks
from fastsam_core.devices import resolve_device
from fastsam_core.io.images import ImageSource, LoadedImage, load_images
from fastsam_core.mask_backends import MASK_BACKENDS, MaskRule, Postprocess, get_mask_backend
from fastsam_core.model.fuse import FuseFormula, fuse_conv_bn
from fastsam_core.model.yolov8_seg import YoloV8Seg
from fastsam_core.ops.anchors import decode_boxes, make_anchors
from fastsam_core.ops.boxes import full_box_step_official, full_box_step_ultralytics, scale_boxes
from fastsam_core.ops.letterbox import (
    LetterboxGeometry,
    check_imgsz,
    letterbox_geometry,
    letterbox_hwc,
)
from fastsam_core.ops.nms import Detections, non_max_suppression
from fastsam_core.prompts.apply import PROMPT_OPTION_NAMES, prepare_prompts, prompt
from fastsam_core.results import Results
from fastsam_core.runtime import FastOptions, InferenceRunner, resolve_fast

logger = logging.getLogger(__name__)

PAD_VALUE = 114  # letterbox fill (spec §3.3)
FullBoxMode = Literal["every_image", "first_image"]
_warned: set[str] = set()


def _warn_once(key: str, message: str, *args: object) -> None:
    if key not in _warned:
        _warned.add(key)
        logger.warning(message, *args)


@dataclass(frozen=True)
class PredictOptions:
    """Per-call settings of `Predictor` (every field can be overridden in `Predictor.__call__`).

    Attributes:
        imgsz: letterbox target, an int (square) or (H, W); `validated()` makes it (H, W)
            multiples of 32.
        conf: keep candidates with score > conf (strict), in [0, 1].
        iou: NMS drops boxes with IoU > iou against a better one, in [0, 1].
        max_det: most detections per image.
        retina_masks: masks at the original resolution (True) or the letterbox input resolution.
        postprocess: "official" (FastSAM repo) or "ultralytics" (8.4.190), see the module docstring.
        mask_rule: official only: "logit" (> 0) or "sigmoid" (> 0.5, upstream 8.0.120).
        full_box: official only: full-image box step on "every_image" or, as the reference, on the
            "first_image" of each batch only.
        mask_backend: name in `mask_backends.MASK_BACKENDS`; "auto" (default) picks the fastest
            exact kernel for the device (tests/kernels: identical masks to "reference").
        bgr: numpy array inputs are BGR (as from OpenCV) instead of RGB.
        batch_size: images per forward pass.
    """

    imgsz: int | tuple[int, int]
    conf: float = 0.4
    iou: float = 0.9
    max_det: int = 300
    retina_masks: bool = True
    postprocess: Postprocess = "official"
    mask_rule: MaskRule = "logit"
    full_box: FullBoxMode = "every_image"
    mask_backend: str = "auto"
    bgr: bool = False
    batch_size: int = 1

    def validated(self) -> PredictOptions:
        """Check every field; returns self with imgsz rounded up to multiples of 32."""
        for name in ("conf", "iou"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError(f"{name} must be a number in [0, 1], got {value!r}")
            if not math.isfinite(value) or not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value}; e.g. {name}=0.4")
        _check_int("max_det", self.max_det, minimum=1)
        _check_int("batch_size", self.batch_size, minimum=1)
        choices = {
            "postprocess": ("official", "ultralytics"),
            "mask_rule": ("logit", "sigmoid"),
            "full_box": ("every_image", "first_image"),
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        if self.postprocess == "ultralytics" and self.mask_rule != "logit":
            raise ValueError(
                "mask_rule='sigmoid' exists only for postprocess='official' (ultralytics 8.4 "
                "thresholds logits at 0); drop mask_rule or use postprocess='official'"
            )
        if self.mask_backend not in MASK_BACKENDS:
            raise ValueError(
                f"unknown mask_backend {self.mask_backend!r}; expected one of {sorted(MASK_BACKENDS)}"
            )
        return dataclasses.replace(self, imgsz=check_imgsz(self.imgsz))


def _check_int(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int >= {minimum}, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")


def _load_network(
    model: YoloV8Seg | str | Path, device: torch.device, fuse: bool, postprocess: str
) -> YoloV8Seg:
    if isinstance(model, (str, Path)):
        from fastsam_core.hub import resolve_weights
        from fastsam_core.weights import load_model

        network = load_model(resolve_weights(model), device=device, fuse=False)
    elif isinstance(model, YoloV8Seg):
        network = model
    else:
        raise TypeError(
            f"model must be a YoloV8Seg, a weights path or a name like 'fastsam-x', got "
            f"{type(model).__name__}"
        )
    network = network.float().eval()
    if fuse:
        # The fused weights of each reference (spec §1.10): 8.0.120's formula for the official path.
        formula: FuseFormula = "v8.0" if postprocess == "official" else "current"
        network = cast(YoloV8Seg, fuse_conv_bn(network, formula=formula))
    return network.to(device).eval()


class Predictor:
    """FastSAM "everything" predictor: every object mask of each image.

    Args:
        model: a YoloV8Seg, a .pt/.safetensors path, or a weights name ('fastsam-s', 'fastsam-x').
        device: 'cpu', 'cuda', 'cuda:N' or 'auto'.
        imgsz: letterbox size (int or (H, W)); default the checkpoint's (1024 for FastSAM).
            Sides that are not multiples of 32 are rounded up, with a warning (as the reference).
        conf, iou, max_det, retina_masks, postprocess, mask_rule, full_box, mask_backend, bgr,
            batch_size: see `PredictOptions`; defaults are FastSAM's documented settings
            (conf 0.4, iou 0.9, retina masks).
        fuse: fold BatchNorm into the convolutions (inference graph of the reference) in a copy;
            a YoloV8Seg passed in is otherwise used as is (cast to fp32, eval, moved to `device`).
        fast: network fast path (`fastsam_core.runtime`): False = plain fp32 NCHW eager, True =
            the "default" preset (channels_last), a preset name ("compile", "bf16", ...) or
            FastOptions. Every option is tested against the plain path.

    Example:
        >>> results = Predictor("fastsam-s")("photo.jpg")
        >>> results[0].masks.to_dense().shape  # (N, H0, W0)
    """

    def __init__(
        self,
        model: YoloV8Seg | str | Path,
        device: str | torch.device = "cpu",
        imgsz: int | tuple[int, int] | None = None,
        conf: float = 0.4,
        iou: float = 0.9,
        max_det: int = 300,
        retina_masks: bool = True,
        postprocess: Postprocess = "official",
        mask_rule: MaskRule = "logit",
        fuse: bool = True,
        full_box: FullBoxMode = "every_image",
        mask_backend: str = "auto",
        bgr: bool = False,
        batch_size: int = 1,
        fast: bool | str | FastOptions | None = False,
    ) -> None:
        self.device = resolve_device(device)
        options = PredictOptions(
            imgsz=(0, 0),
            conf=conf,
            iou=iou,
            max_det=max_det,
            retina_masks=retina_masks,
            postprocess=postprocess,
            mask_rule=mask_rule,
            full_box=full_box,
            mask_backend=mask_backend,
            bgr=bgr,
            batch_size=batch_size,
        )
        dataclasses.replace(options, imgsz=(32, 32)).validated()  # fail fast, before loading
        self.model = _load_network(model, self.device, fuse, postprocess)
        self.runner = InferenceRunner(self.model, self.device, resolve_fast(fast))  # fast path
        cfg = self.model.cfg
        default_names = (
            ("object",)
            if cfg.num_classes == 1
            else tuple(f"class{i}" for i in range(cfg.num_classes))
        )
        self.names: tuple[str, ...] = tuple(cfg.class_names) or default_names
        self.options = dataclasses.replace(options, imgsz=imgsz or cfg.imgsz).validated()

    def __call__(
        self,
        source: ImageSource | Sequence[ImageSource],
        boxes: Any = None,
        points: Any = None,
        labels: Any = None,
        texts: str | Sequence[Any] | None = None,
        **overrides: Any,
    ) -> list[Results]:
        """Segment everything in `source` (one image, a list, a directory or a glob), then
        optionally select masks with prompts (`fastsam_core.prompts`).

        Args:
            source: see `fastsam_core.io.images` (paths, numpy RGB arrays, PIL, tensors).
            boxes, points, labels, texts: prompts in original-image pixels (see
                `prompts.prompt`); for several images, a list with one entry per image.
            **overrides: any `PredictOptions` field for this call (e.g. conf=0.25, imgsz=640)
                and any `prompts.PromptOptions` field (point_mode="union", box_rule=...; the
                box rule defaults to this call's `postprocess`).
        Returns:
            One `Results` per image, in source order (`PromptResults` where prompts were given).
        """
        prompt_options = {k: overrides.pop(k) for k in list(overrides) if k in PROMPT_OPTION_NAMES}
        clip_scorer = overrides.pop("clip_scorer", None)  # a prompts.ClipScorer to reuse
        options = self.resolve_options(**overrides)
        prompt_options.setdefault("box_rule", options.postprocess)
        images = load_images(source, bgr=options.bgr)
        prompt_sets = prepare_prompts(
            [im.hw for im in images], boxes, points, labels, texts, **prompt_options
        )  # validated before the network runs
        results = self.predict_images(images, options)
        if prompt_sets is None:
            return results
        return [
            prompt(r, **p, clip_scorer=clip_scorer, **prompt_options)
            for r, p in zip(results, prompt_sets)
        ]

    def resolve_options(self, **overrides: Any) -> PredictOptions:
        """This predictor's options with `overrides` applied and validated."""
        fields = {f.name for f in dataclasses.fields(PredictOptions)}
        unknown = sorted(set(overrides) - fields)
        if unknown:
            raise TypeError(f"unknown option(s) {unknown}; expected some of {sorted(fields)}")
        if overrides.get("imgsz", 0) is None:
            overrides["imgsz"] = self.model.cfg.imgsz
        return dataclasses.replace(self.options, **overrides).validated()

    def predict_images(
        self, images: Sequence[LoadedImage], options: PredictOptions | None = None
    ) -> list[Results]:
        """Run decoded images through the network in batches of `options.batch_size`."""
        options = options or self.options
        results: list[Results] = []
        for start in range(0, len(images), options.batch_size):
            chunk = images[start : start + options.batch_size]
            results.extend(self._predict_batch(chunk, options))
        return results

    # ------------------------------------------------------------------ one batch
    def _predict_batch(
        self, images: Sequence[LoadedImage], options: PredictOptions
    ) -> list[Results]:
        geometries = [
            letterbox_geometry(im.hw, options.imgsz, stride=32, auto=True) for im in images
        ]
        batch = self._letterbox_batch(images, geometries)  # (B, 3, H, W) uint8
        x = self.runner.to_input(batch)  # (B, 3, H, W) float RGB in [0, 1] (spec §3.4)
        with torch.inference_mode():
            out = self.runner(x)  # SegOutput, fp32 (runtime.py: plain or fast path)
            distances = self.model.head.dfl(out.box_dist)  # (B, 4 * R, A) -> (B, 4, A)
            points, strides = make_anchors(
                out.feature_sizes, self.model.cfg.strides, device=x.device, dtype=x.dtype
            )  # (A, 2), (A, 1)
            boxes_xywh = decode_boxes(distances, points, strides)  # (B, 4, A) input px
            scores = out.class_logits.sigmoid()  # (B, nc, A)
            if len({g.input_hw for g in geometries}) > 1:
                scores = scores * self._own_area_mask(points, strides, geometries)  # (B, 1, A)
            detections = non_max_suppression(
                boxes_xywh,
                scores,
                out.mask_coeffs,
                options.conf,
                options.iou,
                max_det=options.max_det,
            )
            results = []
            for i, (image, geometry, det) in enumerate(zip(images, geometries, detections)):
                in_h, in_w = geometry.input_hw
                protos = out.protos[i, :, : in_h // 4, : in_w // 4]  # (K, Hp, Wp) own area
                results.append(
                    self._postprocess(det, protos, geometry, image, options, index_in_batch=i)
                )
        return results

    @staticmethod
    def _letterbox_batch(
        images: Sequence[LoadedImage], geometries: list[LetterboxGeometry]
    ) -> torch.Tensor:
        """Letterbox each image with its own geometry, placed top-left in one padded batch.

        Returns:
            (B, 3, H, W) uint8 RGB, a view of (B, H, W, 3) memory (channels-last, the layout the
            images are decoded in and the fast path's network layout).
        """
        height = max(g.input_hw[0] for g in geometries)
        width = max(g.input_hw[1] for g in geometries)
        batch = torch.full((len(images), height, width, 3), PAD_VALUE, dtype=torch.uint8)
        for i, (image, geometry) in enumerate(zip(images, geometries)):
            letterbox_hwc(image.image, geometry, PAD_VALUE, out=batch[i])  # (H0, W0, 3) -> slot
        return batch.permute(0, 3, 1, 2)

    @staticmethod
    def _own_area_mask(
        points: torch.Tensor, strides: torch.Tensor, geometries: list[LetterboxGeometry]
    ) -> torch.Tensor:
        """(B, 1, A) 1.0 where the anchor cell lies inside image b's own letterboxed area."""
        centres = points * strides  # (A, 2) cell centres in input px
        limits = torch.tensor(
            [[g.input_hw[1], g.input_hw[0]] for g in geometries],
            dtype=centres.dtype,
            device=centres.device,
        )  # (B, 2) (W, H)
        inside = (centres[None] < limits[:, None]).all(-1)  # (B, A, 2) -> (B, A)
        return inside[:, None].to(centres.dtype)  # (B, 1, A)

    def _postprocess(
        self,
        det: Detections,
        protos: torch.Tensor,
        geometry: LetterboxGeometry,
        image: LoadedImage,
        options: PredictOptions,
        index_in_batch: int,
    ) -> Results:
        """NMS output of one image -> Results (full-image box step, masks, box scaling)."""
        retina = options.retina_masks
        window = (
            None
            if retina
            else (
                geometry.pad_top,
                geometry.pad_left,
                geometry.resized_hw[0],
                geometry.resized_hw[1],
            )
        )
        frame = geometry.orig_hw if retina else geometry.input_hw
        if det.boxes.shape[0] == 0:
            return self._results(
                CompactMasks.empty(frame, protos.device),
                det.boxes.new_zeros((0, 4)),
                det.scores,
                det.class_ids,
                image,
                window,
            )
        backend = get_mask_backend(options.mask_backend)
        boxes_input = det.boxes.clone()  # (N, 4) letterbox px
        full_box_here = options.full_box == "every_image" or index_in_batch == 0
        if options.postprocess == "official" and full_box_here:
            step = full_box_step_official(boxes_input, geometry.input_hw)
            boxes_input = step.boxes  # snapped: these boxes crop the masks (spec §3.7)
            if step.matched.numel():  # the full-box row keeps score and coefficients, class 0
                class_ids = det.class_ids.clone()
                class_ids[step.matched] = 0
                det = dataclasses.replace(det, class_ids=class_ids)
            if step.ambiguous:
                height, width = geometry.input_hw
                boxes_input[step.matched] = boxes_input.new_tensor([0.0, 0.0, width, height])
                _warn_once(
                    "multi_full_box",
                    "%d boxes cover the whole image (IoU > 0.9); all were replaced by the full "
                    "box (the official reference fails on this case and returns None)",
                    step.matched.numel(),
                )
        official = options.postprocess == "official"
        boxes_orig = scale_boxes(boxes_input, geometry, rule=options.postprocess)
        masks = backend(
            protos,
            det.coeffs,
            boxes_input,
            boxes_orig,
            geometry,
            retina=retina,
            postprocess=options.postprocess,
            mask_rule=options.mask_rule if official else "logit",  # 8.4.190 has only logit > 0
        )
        if official:
            return self._results(masks, boxes_orig, det.scores, det.class_ids, image, window)
        keep = masks.areas() > 0  # 8.4.190 drops detections whose mask is empty (spec §3.8)
        if not bool(keep.all()):
            masks, boxes_orig = masks[keep], boxes_orig[keep]
            det = det.select(keep)
        boxes_orig = full_box_step_ultralytics(boxes_orig, geometry.orig_hw).boxes
        return self._results(masks, boxes_orig, det.scores, det.class_ids, image, window)

    def _results(
        self,
        masks: CompactMasks,
        boxes: torch.Tensor,
        scores: torch.Tensor,
        class_ids: torch.Tensor,
        image: LoadedImage,
        window: tuple[int, int, int, int] | None,
    ) -> Results:
        return Results(
            masks=masks,
            boxes=boxes.float(),
            scores=scores.float(),
            class_ids=class_ids.long(),
            orig_hw=image.hw,
            names=self.names,
            path=image.name,
            orig_image=image.image,
            mask_window=window,
        )
