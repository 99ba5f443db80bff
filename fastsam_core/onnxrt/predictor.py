"""`OnnxPredictor`: everything mode and box / point prompts on an exported graph, without torch.

The torch-free twin of `fastsam_core.predictor.Predictor` (same call signature, same options,
same `Results` surface): decode (`onnxrt.decode`) -> letterbox (`onnxrt.preprocess`, bit-exact)
-> graph (`onnxrt.session.OnnxNetwork`: network, DFL decode, anchors, sigmoid) -> NMS
(`onnxrt.nms`) -> one reference's post-processing (`onnxrt.postprocess.POSTPROCESS_NP`) ->
`NumpyResults` -> prompts (`onnxrt.prompts`). Letterbox geometry as the torch path: the minimal
rectangle (auto) for dynamic graphs, exactly the exported size for fixed ones.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fastsam_core.config import MAX_IMGSZ
from fastsam_core.onnxrt.boxes import scale_boxes
from fastsam_core.onnxrt.compact import NumpyCompactMasks
from fastsam_core.onnxrt.decode import DecodedImage, expand_sources, load_image, load_images
from fastsam_core.onnxrt.nms import Detections, non_max_suppression
from fastsam_core.onnxrt.postprocess import POSTPROCESS_NP
from fastsam_core.onnxrt.preprocess import letterbox_batch
from fastsam_core.onnxrt.prompt_inputs import (
    PROMPT_ARGUMENTS,
    PROMPT_OPTION_NAMES,
    NumpyPrompts,
    make_prompts,
)
from fastsam_core.onnxrt.prompts import prompt
from fastsam_core.onnxrt.results import ImageError, NumpyResults
from fastsam_core.onnxrt.session import OnnxNetwork
from fastsam_core.onnxrt.stability import box_stability_scores
from fastsam_core.ops.geometry import LetterboxGeometry, check_imgsz, letterbox_geometry

logger = logging.getLogger(__name__)
_IMAGE_FAILURES = (ValueError, TypeError, RuntimeError, MemoryError)
_warned: set[str] = set()


@dataclass(frozen=True)
class OnnxOptions:
    """Per-call settings (the fields of `fastsam_core.predict_options.PredictOptions` that apply
    to a graph; `mask_backend` has no meaning here)."""

    imgsz: int | tuple[int, int]
    conf: float = 0.4
    iou: float = 0.9
    max_det: int = 300
    retina_masks: bool = True
    postprocess: str = "official"
    mask_rule: str = "logit"
    full_box: str = "every_image"
    bgr: bool = False
    batch_size: int = 1

    def validated(self) -> OnnxOptions:
        """Check every field (messages as `PredictOptions.validated`); imgsz -> (H, W)."""
        for name in ("conf", "iou"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError(f"{name} must be a number in [0, 1], got {value!r}")
            if not math.isfinite(value) or not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value}; e.g. {name}=0.4")
        for name in ("max_det", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"{name} must be an int >= 1, got {value!r}")
            if value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
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
        imgsz = check_imgsz(self.imgsz)
        if max(imgsz) > MAX_IMGSZ:
            raise ValueError(f"imgsz {imgsz} is above the limit {MAX_IMGSZ}")
        return dataclasses.replace(self, imgsz=imgsz)


OPTION_NAMES = frozenset(f.name for f in dataclasses.fields(OnnxOptions))


def _providers(device: str) -> list[Any] | None:
    """Predictor's `device` as onnxruntime providers: auto (None: the session's best), cpu,
    cuda or cuda:N."""
    if device == "auto":
        return None
    if device == "cpu":
        return ["CPUExecutionProvider"]
    if device == "cuda" or device.startswith("cuda:"):
        index = int(device.split(":")[1]) if ":" in device else 0
        return [("CUDAExecutionProvider", {"device_id": index}), "CPUExecutionProvider"]
    raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {device!r}")


class OnnxPredictor:
    """FastSAM on an exported `.onnx` graph (`fastsam export`): numpy, Pillow and onnxruntime.

    Args:
        model: the `.onnx` file.
        device: "auto" (CUDA / TensorRT when onnxruntime has them, else CPU), "cpu", "cuda[:N]".
        imgsz: letterbox size; default the graph's (a fixed graph accepts only its own).
        conf, iou, max_det, retina_masks, postprocess, mask_rule, full_box, bgr, batch_size:
            as `fastsam_core.Predictor` (FastSAM's defaults).
        engine: "onnxruntime".
        threads: onnxruntime intra-op threads (default: one per physical core).

    Example:
        >>> results = OnnxPredictor("fastsam-s.onnx")("photo.jpg", boxes=[10, 20, 200, 240])
        >>> results[0].save_overlay("photo.png")
    """

    def __init__(
        self,
        model: str | Path,
        device: str = "auto",
        imgsz: int | tuple[int, int] | None = None,
        conf: float = 0.4,
        iou: float = 0.9,
        max_det: int = 300,
        retina_masks: bool = True,
        postprocess: str = "official",
        mask_rule: str = "logit",
        full_box: str = "every_image",
        bgr: bool = False,
        batch_size: int = 1,
        engine: str = "onnxruntime",
        threads: int | None = None,
    ) -> None:
        options = OnnxOptions(
            imgsz=(32, 32) if imgsz is None else imgsz, conf=conf, iou=iou, max_det=max_det,
            retina_masks=retina_masks, postprocess=postprocess, mask_rule=mask_rule,
            full_box=full_box, bgr=bgr, batch_size=batch_size,
        ).validated()  # fmt: skip  # fail fast, before loading
        self.network = OnnxNetwork(
            model,
            engine=engine,  # type: ignore[arg-type]  # checked by OnnxNetwork
            providers=_providers(device),
            threads=threads,
        )
        info = self.network.info
        default_names = ("object",) if info.num_classes == 1 else ()
        self.names: tuple[str, ...] = (
            tuple(info.names)
            or default_names
            or tuple(f"class{i}" for i in range(info.num_classes))
        )
        self.options = self.resolve_options(imgsz=imgsz, **_changed(options))

    # ------------------------------------------------------------------ options
    def resolve_options(self, **overrides: Any) -> OnnxOptions:
        """This predictor's options with `overrides` applied and validated."""
        unknown = sorted(set(overrides) - OPTION_NAMES)
        if unknown:
            raise TypeError(
                f"unknown keyword(s) {unknown}; expected options {sorted(OPTION_NAMES)}, "
                f"prompt arguments {list(PROMPT_ARGUMENTS)} or prompt options "
                f"{sorted(PROMPT_OPTION_NAMES)}"
            )
        base = getattr(self, "options", OnnxOptions(imgsz=self.network.info.imgsz))
        if overrides.get("imgsz", 0) is None:
            overrides["imgsz"] = self.network.info.imgsz
        options = dataclasses.replace(base, **overrides).validated()
        fixed = self.network.input_hw
        if fixed is not None and options.imgsz != fixed:
            raise ValueError(
                f"{self.network.path} is a fixed-size graph for imgsz {fixed}, got imgsz "
                f"{options.imgsz}; leave imgsz unset or export with --dynamic"
            )
        if (
            options.postprocess != self.network.info.postprocess
            and options.postprocess not in _warned
        ):
            _warned.add(options.postprocess)
            logger.warning(
                "%s holds the %s fused weights; postprocess=%r may differ slightly from the "
                "torch path (export with --postprocess %s for parity)",
                self.network.path, self.network.info.postprocess, options.postprocess,
                options.postprocess,
            )  # fmt: skip
        return options

    # ------------------------------------------------------------------ calls
    def __call__(
        self,
        source: Any,
        boxes: Any = None,
        points: Any = None,
        labels: Any = None,
        texts: Any = None,
        *,
        prompts: NumpyPrompts | Sequence[NumpyPrompts | None] | None = None,
        **overrides: Any,
    ) -> list[NumpyResults]:
        """Segment everything in `source` (image, list, directory or glob), then optionally
        select masks with box / point prompts (arguments as `Predictor.__call__`; for several
        images each prompt is a list with one entry per image). Text prompts need torch."""
        bboxes = overrides.pop("bboxes", None)
        prompt_options = {k: overrides.pop(k) for k in list(overrides) if k in PROMPT_OPTION_NAMES}
        options = self.resolve_options(**overrides)
        if prompts is None:
            prompt_options.setdefault("box_rule", options.postprocess)
            columns = (boxes, points, labels, texts, bboxes)
            sets: list[NumpyPrompts | None] | None = None
            if any(v is not None for v in columns):
                images = load_images(source, bgr=options.bgr)
                sets = _prompt_sets(len(images), *columns, **prompt_options)
            else:
                make_prompts(**prompt_options)  # bad options fail even without prompts
                images = load_images(source, bgr=options.bgr)
        elif any(v is not None for v in (boxes, points, labels, texts, bboxes)) or prompt_options:
            raise TypeError("pass either prompts=NumpyPrompts(...) or prompt keywords, not both")
        else:
            images = load_images(source, bgr=options.bgr)
            sets = [prompts] * len(images) if isinstance(prompts, NumpyPrompts) else list(prompts)
            if len(sets) != len(images):
                raise ValueError(f"got {len(sets)} prompt sets for {len(images)} images")
        if sets is not None:  # clipped to each image before the network runs
            sets = [None if p is None else p.fit(im.hw) for p, im in zip(sets, images)]
        results = self.predict_images(images, options)
        if sets is None:
            return results
        return [r if p is None else prompt(r, prompts=p) for r, p in zip(results, sets)]

    def stream(
        self, source: Any, *, prompts: NumpyPrompts | None = None, **overrides: Any
    ) -> Generator[NumpyResults | ImageError, None, None]:
        """Like `__call__`, one image at a time: yields each image's result (with prompts) or an
        `ImageError` for a source that cannot be read or segmented, in source order."""
        keywords = {
            k: overrides.pop(k)
            for k in list(overrides)
            if k in PROMPT_ARGUMENTS or k in PROMPT_OPTION_NAMES
        }
        options = self.resolve_options(**overrides)  # bad options fail before anything runs
        if keywords:
            if prompts is not None:
                raise TypeError(
                    "pass either prompts=NumpyPrompts(...) or prompt keywords, not both"
                )
            keywords.setdefault("box_rule", options.postprocess)
            prompts = make_prompts(**keywords)
        return self._generate(expand_sources(source), options, prompts)

    def _generate(
        self, items: list[Any], options: OnnxOptions, prompts: NumpyPrompts | None
    ) -> Generator[NumpyResults | ImageError, None, None]:
        pending: list[DecodedImage | ImageError] = []
        for i, item in enumerate(items):
            try:
                pending.append(load_image(item, bgr=options.bgr, index=i))
            except (*_IMAGE_FAILURES, OSError) as err:
                pending.append(
                    ImageError(
                        str(item) if isinstance(item, (str, Path)) else f"image{i}", str(err)
                    )
                )
            if sum(isinstance(p, DecodedImage) for p in pending) == options.batch_size:
                yield from self._segment(pending, options, prompts)
                pending = []
        yield from self._segment(pending, options, prompts)

    def _segment(
        self,
        pending: list[DecodedImage | ImageError],
        options: OnnxOptions,
        prompts: NumpyPrompts | None,
    ) -> Generator[NumpyResults | ImageError, None, None]:
        images = [p for p in pending if isinstance(p, DecodedImage)]
        outcomes: list[NumpyResults | ImageError]
        try:
            outcomes = list(self.predict_images(images, options)) if images else []
        except _IMAGE_FAILURES as err:
            outcomes = [ImageError(im.name, str(err)) for im in images]
        done = iter(outcomes)
        for item in pending:
            if isinstance(item, ImageError):
                yield item
                continue
            outcome = next(done)
            if prompts is not None and isinstance(outcome, NumpyResults):
                try:
                    outcome = prompt(outcome, prompts=prompts.fit(outcome.orig_hw))
                except _IMAGE_FAILURES as err:
                    outcome = ImageError(item.name, str(err))
            yield outcome

    # ------------------------------------------------------------------ batches
    def predict_images(
        self, images: Sequence[DecodedImage], options: OnnxOptions | None = None
    ) -> list[NumpyResults]:
        """Run decoded images through the graph in batches of `options.batch_size`."""
        options = options or self.options
        results: list[NumpyResults] = []
        for start in range(0, len(images), options.batch_size):
            results.extend(self._predict_batch(images[start : start + options.batch_size], options))
        return results

    def _predict_batch(
        self, images: Sequence[DecodedImage], options: OnnxOptions
    ) -> list[NumpyResults]:
        auto = self.network.input_hw is None  # fixed graphs take exactly their own size
        geometries = [
            letterbox_geometry(im.hw, options.imgsz, stride=32, auto=auto) for im in images
        ]
        batch = letterbox_batch([im.image for im in images], geometries)  # (B, 3, H, W) uint8
        out = self.network(batch)
        scores = out.scores  # (B, nc, A)
        if len({g.input_hw for g in geometries}) > 1:  # as Predictor._own_area_mask
            limits = np.array([[g.input_hw[1], g.input_hw[0]] for g in geometries], np.float32)
            inside = np.all(out.anchors[None] < limits[:, None], -1)  # (B, A, 2) -> (B, A)
            scores = scores * inside[:, None].astype(np.float32)  # (B, 1, A)
        detections = non_max_suppression(
            out.boxes, scores, out.mask_coeffs, options.conf, options.iou, max_det=options.max_det
        )
        results = []
        for i, (image, geometry, det) in enumerate(zip(images, geometries, detections)):
            in_h, in_w = geometry.input_hw
            protos = out.protos[i, :, : in_h // 4, : in_w // 4]  # (K, Hp, Wp) own area
            results.append(self._postprocess(det, protos, geometry, image, options, i, out.anchors))
        return results

    def _postprocess(
        self,
        det: Detections,
        protos: np.ndarray,
        geometry: LetterboxGeometry,
        image: DecodedImage,
        options: OnnxOptions,
        index_in_batch: int,
        anchors: np.ndarray,
    ) -> NumpyResults:
        """NMS output of one image -> NumpyResults through the chosen reference."""
        retina = options.retina_masks
        full_box = options.full_box == "every_image" or index_in_batch == 0
        window = None
        if not retina:
            window = (geometry.pad_top, geometry.pad_left, *geometry.resized_hw)
        regions, data, offsets, frame_hw, boxes, det = POSTPROCESS_NP[options.postprocess](
            det, protos, geometry, retina=retina, mask_rule=options.mask_rule, full_box=full_box
        )
        xy = anchors[det.anchor_indices].astype(np.float32)  # (N, 2) cell centres, input px
        points = scale_boxes(np.concatenate([xy, xy], 1), geometry, options.postprocess)[:, :2]
        return NumpyResults(
            masks=NumpyCompactMasks(regions, data, offsets, frame_hw),
            boxes=boxes,
            scores=det.scores,
            class_ids=det.class_ids,
            orig_hw=image.hw,
            names=self.names,
            path=image.name,
            orig_image=image.image,
            mask_window=window,
            stability_scores=box_stability_scores(protos, det.coeffs, det.boxes),
            point_coords=points,
        )


def _changed(options: OnnxOptions) -> dict[str, Any]:
    """The fields of validated constructor options other than imgsz (resolved against the graph)."""
    return {
        f.name: getattr(options, f.name) for f in dataclasses.fields(options) if f.name != "imgsz"
    }


def _prompt_sets(
    num_images: int, boxes: Any, points: Any, labels: Any, texts: Any, bboxes: Any, **options: Any
) -> list[NumpyPrompts | None]:
    """One checked prompt set per image: as given for one image, else lists of one per image."""
    if num_images == 1:
        return [make_prompts(boxes, points, labels, texts, bboxes=bboxes, **options)]
    if bboxes is not None:
        if boxes is not None:
            raise TypeError("pass boxes= or its alias bboxes=, not both")
        boxes = bboxes
    if isinstance(texts, str):
        texts = [texts] * num_images
    columns = []
    for name, value in (("boxes", boxes), ("points", points), ("labels", labels), ("texts", texts)):
        if value is not None and (not hasattr(value, "__len__") or len(value) != num_images):
            raise ValueError(
                f"{name} for {num_images} images must be a list with one entry per image (None "
                f"for no prompt); e.g. {name}=[[...], None, ...]"
            )
        columns.append([None] * num_images if value is None else list(value))
    return [make_prompts(b, p, lb, t, **options) for b, p, lb, t in zip(*columns)]
