"""Exported ONNX graphs for tests (issue 14), cached on disk, plus graphs of *other* models.

`exported_graph(GraphRecipe(...))` exports the tiny checkpoint `TINY_CHECKPOINT` once per recipe
into the test cache (key: fastsam-core version, a digest of the exporter's source files and the
recipe) and returns the `.onnx` path; `reference_outputs` runs the same fused network in torch
through `ExportGraph`, the eager twin of the graph, for parity checks. `foreign_graph` writes a
valid ONNX model of another network (no fastsam metadata) for the bad-input tests.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tests.support.cache import test_cache_root

REPO_ROOT = Path(__file__).resolve().parents[2]
TINY_CHECKPOINT = REPO_ROOT / "tests" / "fixtures" / "ul120_tiny_seg_r26.pt"
# Files whose change invalidates cached graphs (the version alone does not move during work).
_EXPORTER_SOURCES = (
    "fastsam_core/onnx_export.py",
    "fastsam_core/onnxrt/graph.py",
    "fastsam_core/onnxrt/quantize.py",
)


@dataclass(frozen=True)
class GraphRecipe:
    """Arguments of `export_onnx` (and INT8 quantization) for the tiny checkpoint."""

    imgsz: int | tuple[int, int] = 256
    dynamic: bool = False
    half: bool = False
    postprocess: str = "official"
    int8: bool = False  # quantized on the bundled photos (`onnxrt.quantize.quantize_graph`)
    checkpoint: str = str(TINY_CHECKPOINT)


def _key(recipe: GraphRecipe) -> str:
    from fastsam_core import __version__

    h = hashlib.sha256(json.dumps(dataclasses.asdict(recipe), sort_keys=True).encode())
    h.update(__version__.encode())
    for name in _EXPORTER_SOURCES if recipe.int8 else _EXPORTER_SOURCES[:2]:
        path = REPO_ROOT / name
        h.update(path.read_bytes() if path.is_file() else b"")
    return h.hexdigest()[:16]


def exported_graph(recipe: GraphRecipe = GraphRecipe()) -> Path:
    """The cached `.onnx` of `recipe`, exported on first use (atomic: safe across processes)."""
    from fastsam_core.onnx_export import export_onnx

    folder = test_cache_root() / "onnx-graphs"
    path = folder / f"{_key(recipe)}.onnx"
    if path.is_file():
        return path
    folder.mkdir(parents=True, exist_ok=True)
    kwargs = dict(
        imgsz=recipe.imgsz,
        dynamic=recipe.dynamic,
        half=recipe.half,
        postprocess=recipe.postprocess,
        force=True,  # another process may have written the same key meanwhile: same content
    )
    if not recipe.int8:
        return export_onnx(recipe.checkpoint, path, **kwargs)  # type: ignore[arg-type]
    from fastsam_core.onnxrt.quantize import quantize_graph
    from tests.support.photos import photo_paths

    fp32 = exported_graph(dataclasses.replace(recipe, int8=False))
    quantize_graph(fp32, path, photo_paths(), force=True, measure=False)
    return path


def reference_outputs(images: np.ndarray, recipe: GraphRecipe = GraphRecipe()) -> list[np.ndarray]:
    """The torch twin of `exported_graph(recipe)` on `images` (B, 3, H, W) uint8: boxes, scores,
    mask_coeffs, protos, anchors as float32 numpy arrays (fp16 network for `recipe.half`)."""
    import torch

    from fastsam_core.model.fuse import fuse_conv_bn
    from fastsam_core.onnx_export import ExportGraph
    from fastsam_core.postprocess import POSTPROCESS
    from fastsam_core.weights import load_model

    formula = POSTPROCESS[recipe.postprocess].fuse_formula  # type: ignore[index]
    network = fuse_conv_bn(load_model(recipe.checkpoint), formula=formula)
    if recipe.half:
        network = network.half()
    with torch.no_grad():
        outputs = ExportGraph(network).eval()(torch.from_numpy(np.ascontiguousarray(images)))
    return [t.float().numpy() for t in outputs]


def letterboxed_photo(name: str, hw: tuple[int, int]) -> np.ndarray:
    """Bundled photo `name` letterboxed to exactly `hw` (auto=False) -> (1, 3, H, W) uint8 RGB."""
    from fastsam_core.io.images import load_image
    from fastsam_core.ops.letterbox import letterbox, letterbox_geometry
    from tests.support.photos import photo

    rgb = load_image(photo(name)).image  # (H0, W0, 3) uint8 tensor
    geometry = letterbox_geometry(tuple(rgb.shape[:2]), hw, stride=32, auto=False)
    return letterbox(rgb, geometry).permute(2, 0, 1)[None].contiguous().numpy()


def foreign_graph(path: Path, metadata: dict[str, str] | None = None) -> Path:
    """A valid ONNX model of another network at `path`: input `images` float32 (1, 3, 8, 8) ->
    output `logits` (1, 3, 8, 8) through one Relu; `metadata` becomes its metadata_props."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Relu", ["images"], ["logits"])],
        "not_fastsam",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 3, 8, 8])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    for key, value in (metadata or {}).items():
        model.metadata_props.add(key=key, value=value)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path
