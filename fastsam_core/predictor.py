"""Everything mode end to end: images in, per-image `Results` out (spec §3).

Pipeline per batch: decode (`io.images`) -> letterbox (`ops.letterbox`) -> uint8 / 255 -> fused
YoloV8Seg (`runtime`: plain or fast path) -> DFL decode + anchors (`ops.anchors`) -> sigmoid
scores -> NMS (`ops.nms`) -> one of the two references' post-processing (`postprocess`: full-image
box step, masks through `mask_backends`, boxes scaled to the original image) -> `Results`
-> prompts (`prompts`).

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
from collections.abc import Generator, Sequence
from pathlib import Path
from typing import Any, cast

import torch

from fastsam_core.compact_masks import CompactMasks
from fastsam_core.devices import resolve_device
from fastsam_core.io.images import ImageSource, LoadedImage, load_images
from fastsam_core.mask_backends import get_mask_backend
from fastsam_core.model.fuse import fuse_conv_bn
from fastsam_core.model.yolov8_seg import YoloV8Seg
from fastsam_core.ops.anchors import decode_boxes, dfl_decode, make_anchors
from fastsam_core.ops.boxes import scale_boxes
from fastsam_core.ops.letterbox import LetterboxGeometry, letterbox_batch, letterbox_geometry
from fastsam_core.ops.masks import MaskRule
from fastsam_core.ops.nms import Detections, non_max_suppression
from fastsam_core.ops.references import Postprocess
from fastsam_core.ops.stability import PendingStability
from fastsam_core.postprocess import POSTPROCESS
from fastsam_core.predict_options import PREDICT_OPTION_NAMES, FullBoxMode, PredictOptions
from fastsam_core.profiling import NO_CLOCK, NullClock
from fastsam_core.prompts.apply import prompt
from fastsam_core.prompts.clip_scorer import ClipScorer, ClipSettings
from fastsam_core.prompts.prompt_set import (
    PROMPT_ARGUMENTS,
    PROMPT_OPTION_NAMES,
    Prompts,
    make_prompt_sets,
)
from fastsam_core.results import ImageError, Results
from fastsam_core.runtime import FastOptions, InferenceRunner, resolve_fast


def _load_network(
    model: YoloV8Seg | str | Path, device: torch.device, fuse: bool, postprocess: Postprocess
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
    if fuse:  # the fused weights of each reference (spec §1.10)
        formula = POSTPROCESS[postprocess].fuse_formula
        network = cast(YoloV8Seg, fuse_conv_bn(network, formula=formula))
    return network.to(device).eval()


class Predictor:
    """FastSAM "everything" predictor: every object mask of each image.

    Args:
        model: a YoloV8Seg, a .pt/.safetensors path, or a weights name ('fastsam-s', 'fastsam-x').
        device: 'auto' (default: CUDA when present, else CPU), 'cpu', 'cuda' or 'cuda:N'.
        imgsz: letterbox size (int or (H, W)); default the checkpoint's (1024 for FastSAM).
            Sides that are not multiples of 32 are rounded up, with a warning (as the reference).
        conf, iou, max_det, retina_masks, postprocess, mask_rule, full_box, mask_backend, bgr,
            batch_size: see `PredictOptions`; defaults are FastSAM's documented settings
            (conf 0.4, iou 0.9, retina masks).
        fuse: fold BatchNorm into the convolutions (inference graph of the reference) in a copy;
            a YoloV8Seg passed in is otherwise used as is (cast to fp32, eval, moved to `device`).
        fast: network fast path (`fastsam_core.runtime`): True (default) = the "default" preset
            (channels_last: faster, masks equal to the plain path within the tested tolerance),
            False = plain fp32 NCHW eager (what the parity tests pin), a preset name ("compile",
            "bf16", ...) or FastOptions.
        clip: the CLIP model of text prompts: `ClipSettings` (built once, on first use, on
            `device`) or a ready `ClipScorer`; default ViT-B-32 with OpenAI weights.

    Example:
        >>> results = Predictor("fastsam-s")("photo.jpg")
        >>> results[0].masks.to_dense().shape  # (N, H0, W0)
    """

    def __init__(
        self,
        model: YoloV8Seg | str | Path,
        device: str | torch.device = "auto",
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
        fast: bool | str | FastOptions | None = True,
        clip: ClipSettings | ClipScorer | None = None,
    ) -> None:
        self.device = resolve_device(device)
        options = PredictOptions(
            imgsz=(32, 32) if imgsz is None else imgsz, conf=conf, iou=iou, max_det=max_det,
            retina_masks=retina_masks,
            postprocess=postprocess, mask_rule=mask_rule, full_box=full_box,
            mask_backend=mask_backend, bgr=bgr, batch_size=batch_size,
        ).validated()  # fmt: skip  # fail fast, before loading
        fast_options = resolve_fast(fast)
        if not isinstance(clip, (ClipSettings, ClipScorer, type(None))):
            raise TypeError(f"clip must be ClipSettings or a ClipScorer, got {type(clip).__name__}")
        self.model = _load_network(model, self.device, fuse, postprocess)
        self.runner = InferenceRunner(self.model, self.device, fast_options)  # fast path
        cfg = self.model.cfg
        default_names = (
            ("object",)
            if cfg.num_classes == 1
            else tuple(f"class{i}" for i in range(cfg.num_classes))
        )
        self.names: tuple[str, ...] = tuple(cfg.class_names) or default_names
        if imgsz is None:  # the checkpoint's size; an explicit imgsz was checked above
            options = dataclasses.replace(options, imgsz=cfg.imgsz).validated()
        self.options = options
        self._clip = clip or ClipSettings()

    @property
    def clip_scorer(self) -> ClipScorer:
        """The CLIP scorer of text prompts, built once (on first use) on this device."""
        if isinstance(self._clip, ClipSettings):
            self._clip = self._clip.build(self.device)
        return self._clip

    def __call__(
        self,
        source: ImageSource | Sequence[ImageSource],
        boxes: Any = None,
        points: Any = None,
        labels: Any = None,
        texts: str | Sequence[Any] | None = None,
        *,
        prompts: Prompts | Sequence[Prompts | None] | None = None,
        timer: NullClock = NO_CLOCK,
        **overrides: Any,
    ) -> list[Results]:
        """Segment everything in `source` (one image, a list, a directory or a glob), then
        optionally select masks with prompts (`fastsam_core.prompts`).

        Args:
            source: see `fastsam_core.io.images` (paths, numpy RGB arrays, PIL, tensors).
            boxes, points, labels, texts: prompts in original-image pixels (see
                `prompts.prompt`; `bboxes=` is an alias of boxes); for several images, a list
                with one entry per image.
            prompts: already checked `Prompts` (one for every image, or one per image) instead.
            timer: stage hooks (`profiling.StageClock` to time each stage).
            **overrides: any `PredictOptions` field for this call (e.g. conf=0.25, imgsz=640)
                and any `prompts.PromptOptions` field (point_mode="union", box_rule=...; the
                box rule defaults to this call's `postprocess`); `clip_scorer=` a `ClipScorer`.
        Returns:
            One `Results` per image, in source order (`PromptResults` where prompts were given).
        """
        bboxes = overrides.pop("bboxes", None)
        clip_scorer = overrides.pop("clip_scorer", None)
        prompt_options = {k: overrides.pop(k) for k in list(overrides) if k in PROMPT_OPTION_NAMES}
        options = self.resolve_options(**overrides)
        images = load_images(source, bgr=options.bgr)
        if prompts is None:
            prompt_options.setdefault("box_rule", options.postprocess)
            prompt_sets = make_prompt_sets(
                len(images), boxes, points, labels, texts, bboxes=bboxes, **prompt_options
            )
        elif any(v is not None for v in (boxes, points, labels, texts, bboxes)) or prompt_options:
            raise TypeError("pass either prompts=Prompts(...) or prompt keywords, not both")
        else:
            given: list[Prompts | None] = (
                [prompts] * len(images) if isinstance(prompts, Prompts) else list(prompts)
            )
            prompt_sets = given
            if len(given) != len(images):
                raise ValueError(f"got {len(given)} prompt sets for {len(images)} images")
        if prompt_sets is not None:  # clipped to each image before the network runs
            prompt_sets = [
                None if p is None else p.fit(im.hw) for p, im in zip(prompt_sets, images)
            ]
            if clip_scorer is None and any(p is not None and p.texts for p in prompt_sets):
                clip_scorer = self.clip_scorer  # built once, before the network runs
        results = self.predict_images(images, options, timer=timer)
        if prompt_sets is None:
            return results
        out = []
        for r, p in zip(results, prompt_sets):
            with timer.stage("prompt"):
                out.append(r if p is None else prompt(r, prompts=p, clip_scorer=clip_scorer))
        return out

    def stream(
        self,
        source: ImageSource | Sequence[ImageSource],
        *,
        prompts: Prompts | None = None,
        timer: NullClock = NO_CLOCK,
        prefetch: int = 2,
        **overrides: Any,
    ) -> Generator[Results | ImageError, None, None]:
        """Like `__call__`, one image at a time: a generator over `source` (files, directories,
        globs, arrays) yielding each image's `Results` (`PromptResults` with prompts) or an
        `ImageError` for a file that cannot be read or segmented, in source order.

        Memory stays bounded: images are decoded `prefetch` ahead in a background thread and
        only `batch_size` of them are segmented at once (`fastsam_core.stream`). Prompts are one
        `Prompts` or prompt keywords (boxes=, points=, labels=, texts=) for every image.
        """
        from fastsam_core.stream import stream_results

        return stream_results(self, source, prompts, timer, prefetch, overrides)

    def resolve_options(self, **overrides: Any) -> PredictOptions:
        """This predictor's options with `overrides` applied and validated."""
        unknown = sorted(set(overrides) - PREDICT_OPTION_NAMES)
        if unknown:
            raise TypeError(
                f"unknown keyword(s) {unknown}; expected options {sorted(PREDICT_OPTION_NAMES)}, "
                f"prompt arguments {list(PROMPT_ARGUMENTS)}, prompt options "
                f"{sorted(PROMPT_OPTION_NAMES)} or clip_scorer"
            )
        if overrides.get("imgsz", 0) is None:
            overrides["imgsz"] = self.model.cfg.imgsz
        return dataclasses.replace(self.options, **overrides).validated()

    def predict_images(
        self,
        images: Sequence[LoadedImage],
        options: PredictOptions | None = None,
        timer: NullClock = NO_CLOCK,
    ) -> list[Results]:
        """Run decoded images through the network in batches of `options.batch_size`."""
        options = options or self.options
        results: list[Results] = []
        for start in range(0, len(images), options.batch_size):
            chunk = images[start : start + options.batch_size]
            results.extend(self._predict_batch(chunk, options, timer))
        return results

    # ------------------------------------------------------------------ one batch
    def _predict_batch(
        self, images: Sequence[LoadedImage], options: PredictOptions, timer: NullClock
    ) -> list[Results]:
        with timer.stage("preprocess"):
            geometries = [
                letterbox_geometry(im.hw, options.imgsz, stride=32, auto=True) for im in images
            ]
            batch = letterbox_batch([im.image for im in images], geometries)  # (B, 3, H, W) u8
            x = self.runner.to_input(batch)  # (B, 3, H, W) float RGB in [0, 1] (spec §3.4)
        with torch.inference_mode():
            with timer.stage("forward"):
                out = self.runner(x)  # SegOutput, fp32 (runtime.py: plain or fast path)
            with timer.stage("nms"):
                distances = dfl_decode(out.box_dist, self.model.cfg.reg_max)  # (B, 4, A)
                points, strides = make_anchors(
                    out.feature_sizes, self.model.cfg.strides, device=x.device, dtype=x.dtype
                )  # (A, 2), (A, 1)
                boxes_xywh = decode_boxes(distances, points, strides)  # (B, 4, A) input px
                scores = out.class_logits.sigmoid()  # (B, nc, A)
                if len({g.input_hw for g in geometries}) > 1:
                    scores = scores * self._own_area_mask(points, strides, geometries)
                detections = non_max_suppression(
                    boxes_xywh, scores, out.mask_coeffs, options.conf, options.iou,
                    max_det=options.max_det,
                )  # fmt: skip
            results = []
            for i, (image, geometry, det) in enumerate(zip(images, geometries, detections)):
                in_h, in_w = geometry.input_hw
                protos = out.protos[i, :, : in_h // 4, : in_w // 4]  # (K, Hp, Wp) own area
                results.append(
                    self._postprocess(
                        det, protos, geometry, image, options, i, timer, points * strides
                    )
                )
        return results

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
        timer: NullClock = NO_CLOCK,
        anchor_xy: torch.Tensor | None = None,
    ) -> Results:
        """NMS output of one image -> Results through the chosen reference (`POSTPROCESS`)."""
        retina = options.retina_masks
        full_box = options.full_box == "every_image" or index_in_batch == 0
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
        if det.boxes.shape[0] == 0:
            frame = geometry.orig_hw if retina else geometry.input_hw
            masks, boxes = CompactMasks.empty(frame, protos.device), det.boxes.new_zeros((0, 4))
        else:
            masks, boxes, det = POSTPROCESS[options.postprocess].run(
                det, protos, geometry, get_mask_backend(options.mask_backend),
                retina=retina, mask_rule=options.mask_rule, full_box=full_box, timer=timer,
            )  # fmt: skip
        with timer.stage("masks"):  # SAM-style stability and anchor points (export.records)
            stability = PendingStability(protos, det.coeffs, det.boxes)  # computed on first use
            anchors = None
            if anchor_xy is not None:  # (A, 2) cell centres, input px -> original px
                xy = anchor_xy[det.anchor_indices].float()  # (N, 2)
                anchors = scale_boxes(torch.cat([xy, xy], 1), geometry, options.postprocess)[:, :2]
        return Results(
            masks=masks,
            boxes=boxes.float(),
            scores=det.scores.float(),
            class_ids=det.class_ids.long(),
            orig_hw=image.hw,
            names=self.names,
            path=image.name,
            orig_image=image.image,
            mask_window=window,
            stability_scores=stability,
            point_coords=None if anchors is None else anchors.cpu(),
        )
