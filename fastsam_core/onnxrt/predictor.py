"""`OnnxPredictor`: everything mode and box / point prompts on an exported graph, without torch.

The torch-free twin of `fastsam_core.predictor.Predictor` (same call signature, same options,
same `Results` surface): decode (`io.images`, numpy) -> letterbox (`onnxrt.preprocess`, bit-exact)
-> graph (`onnxrt.session.OnnxNetwork`: network, DFL decode, anchors, sigmoid) -> NMS
(`onnxrt.nms`) -> one reference's post-processing (`onnxrt.postprocess.POSTPROCESS_NP`) ->
`NumpyResults` -> prompts (`onnxrt.prompts`). Letterbox geometry as the torch path: the minimal
rectangle (auto) for dynamic graphs, exactly the exported size for fixed ones.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Generator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from fastsam_core.io.images import ImageSource, LoadedImage, expand_sources, load_images
from fastsam_core.onnxrt.boxes import scale_boxes
from fastsam_core.onnxrt.compact import NumpyCompactMasks
from fastsam_core.onnxrt.nms import Detections, non_max_suppression
from fastsam_core.onnxrt.postprocess import POSTPROCESS_NP
from fastsam_core.onnxrt.preprocess import letterbox_batch
from fastsam_core.onnxrt.prompt_inputs import (
    PROMPT_ARGUMENTS,
    PROMPT_OPTION_NAMES,
    NumpyPrompts,
    make_prompt_sets,
)
from fastsam_core.onnxrt.prompts import prompt
from fastsam_core.onnxrt.results import NumpyResults
from fastsam_core.onnxrt.session import OnnxNetwork
from fastsam_core.onnxrt.stability import box_stability_scores
from fastsam_core.ops.geometry import LetterboxGeometry, letterbox_geometry
from fastsam_core.ops.references import Postprocess
from fastsam_core.predict_options import PREDICT_OPTION_NAMES, FullBoxMode, PredictOptions
from fastsam_core.stream import IMAGE_FAILURES, ImageError, stream_decoded

if TYPE_CHECKING:  # a type only: ops.masks imports torch
    from fastsam_core.ops.masks import MaskRule

logger = logging.getLogger(__name__)
# onnxruntime reports an allocation failure as its own RuntimeError subclass or a MemoryError
_IMAGE_FAILURES = (*IMAGE_FAILURES, MemoryError)
_warned: set[str] = set()


def _check_options(options: PredictOptions) -> PredictOptions:
    """`PredictOptions.validated` for a graph: mask_backend names torch kernels, so only its
    default "auto" is accepted."""
    if options.mask_backend != "auto":
        raise ValueError(
            f"mask_backend={options.mask_backend!r} applies to PyTorch models; an ONNX graph's "
            "masks are assembled by the runtime (numpy): leave mask_backend unset"
        )
    return options.validated(backends=False)


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
            as `fastsam_core.Predictor` (FastSAM's defaults; `PredictOptions`).
        mask_backend: only "auto" (the PyTorch mask kernels do not apply to a graph).
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
        postprocess: Postprocess = "official",
        mask_rule: MaskRule = "logit",
        full_box: FullBoxMode = "every_image",
        mask_backend: str = "auto",
        bgr: bool = False,
        batch_size: int = 1,
        engine: str = "onnxruntime",
        threads: int | None = None,
    ) -> None:
        options = _check_options(
            PredictOptions(
                imgsz=(32, 32) if imgsz is None else imgsz, conf=conf, iou=iou, max_det=max_det,
                retina_masks=retina_masks, postprocess=postprocess, mask_rule=mask_rule,
                full_box=full_box, mask_backend=mask_backend, bgr=bgr, batch_size=batch_size,
            )
        )  # fmt: skip  # fail fast, before loading
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
    def resolve_options(self, **overrides: Any) -> PredictOptions:
        """This predictor's options with `overrides` applied and validated."""
        unknown = sorted(set(overrides) - PREDICT_OPTION_NAMES)
        if unknown:
            raise TypeError(
                f"unknown keyword(s) {unknown}; expected options {sorted(PREDICT_OPTION_NAMES)}, "
                f"prompt arguments {list(PROMPT_ARGUMENTS)} or prompt options "
                f"{sorted(PROMPT_OPTION_NAMES)}"
            )
        base = getattr(self, "options", PredictOptions(imgsz=self.network.info.imgsz))
        if overrides.get("imgsz", 0) is None:
            overrides["imgsz"] = self.network.info.imgsz
        options = _check_options(dataclasses.replace(base, **overrides))
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
        columns = (boxes, points, labels, texts, bboxes)
        sets: list[NumpyPrompts | None] | None
        if prompts is None:
            prompt_options.setdefault("box_rule", options.postprocess)
            images = load_images(source, bgr=options.bgr, array=True)
            sets = make_prompt_sets(
                len(images), boxes, points, labels, texts, bboxes=bboxes, **prompt_options
            )
        elif any(v is not None for v in columns) or prompt_options:
            raise TypeError("pass either prompts=NumpyPrompts(...) or prompt keywords, not both")
        else:
            images = load_images(source, bgr=options.bgr, array=True)
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
        self,
        source: ImageSource | Sequence[ImageSource],
        *,
        prompts: NumpyPrompts | None = None,
        prefetch: int = 2,
        vid_stride: int = 1,
        **overrides: Any,
    ) -> Generator[NumpyResults | ImageError, None, None]:
        """Like `__call__`, one image at a time (as `Predictor.stream`: `fastsam_core.stream`):
        yields each image's result (with prompts) or an `ImageError` for a source that cannot
        be read or segmented, in source order. Images are decoded `prefetch` ahead in a
        background thread; a video yields every `vid_stride`-th frame, each with its `frame`."""
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
            sets = make_prompt_sets(1, **keywords)
            prompts = None if sets is None else sets[0]
        given = prompts

        def finish(results: NumpyResults, image: LoadedImage) -> NumpyResults:
            assert given is not None  # only passed with prompts
            return prompt(results, prompts=given.fit(results.orig_hw))

        return stream_decoded(
            expand_sources(source, vid_stride),
            segment=lambda images: self.predict_images(images, options),
            finish=None if given is None else finish,
            bgr=options.bgr,
            batch_size=options.batch_size,
            prefetch=prefetch,
            array=True,
            failures=_IMAGE_FAILURES,
        )

    # ------------------------------------------------------------------ batches
    def predict_images(
        self, images: Sequence[LoadedImage], options: PredictOptions | None = None
    ) -> list[NumpyResults]:
        """Run decoded images (numpy: `io.images.load_image(..., array=True)`) through the
        graph in batches of `options.batch_size`."""
        options = options or self.options
        results: list[NumpyResults] = []
        for start in range(0, len(images), options.batch_size):
            results.extend(self._predict_batch(images[start : start + options.batch_size], options))
        return results

    def _predict_batch(
        self, images: Sequence[LoadedImage], options: PredictOptions
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
        image: LoadedImage,
        options: PredictOptions,
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
            frame=image.frame,
            orig_image=image.image,
            mask_window=window,
            stability_scores=box_stability_scores(protos, det.coeffs, det.boxes),
            point_coords=points,
        )


def _changed(options: PredictOptions) -> dict[str, Any]:
    """The fields of validated constructor options other than imgsz (resolved against the graph)."""
    return {
        f.name: getattr(options, f.name) for f in dataclasses.fields(options) if f.name != "imgsz"
    }
