"""fastsam_core.onnx_export + onnxrt.graph: exported graphs against their torch twin, the
metadata schema, and the file rules (refuses to overwrite, complete or absent). Issue 14."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from fastsam_core import __version__
from fastsam_core.config import FASTSAM_S, yolov8_seg_config
from fastsam_core.onnx_export import export_onnx
from fastsam_core.model.yolov8_seg import YoloV8Seg
from fastsam_core.onnxrt.graph import FORMAT_VERSION, METADATA_KEY, OUTPUT_NAMES, GraphInfo
from fastsam_core.onnxrt.session import OnnxNetwork
from fastsam_core.weights import sha256_file
from tests.support.onnx_graphs import (
    TINY_CHECKPOINT,
    GraphRecipe,
    exported_graph,
    letterboxed_photo,
    reference_outputs,
)


def _rel_err(got: np.ndarray, want: np.ndarray) -> float:
    """Max abs difference over the reference's largest magnitude (the tiny random net's boxes
    reach ~1500 px, its coefficients ~150)."""
    assert got.shape == want.shape and got.dtype == np.float32, (got.shape, want.shape, got.dtype)
    return float(np.abs(got - want).max() / max(float(np.abs(want).max()), 1.0))


# (recipe, input batches, bound on the relative error of every output)
PARITY = [
    # fp32: measured <= 7e-5 (onnxruntime's conv kernels vs torch's)
    (GraphRecipe(), [("coffee.jpg", (256, 256)), ("rocket.jpg", (256, 256))], 1e-3),
    (GraphRecipe(postprocess="ultralytics"), [("astronaut.jpg", (256, 256))], 1e-3),
    # dynamic: other sizes than the export's, non-square
    (GraphRecipe(dynamic=True), [("chelsea.jpg", (320, 192)), ("coffee.jpg", (256, 256))], 1e-3),
    # fp16 vs the torch fp16 twin: measured 6% on boxes of the random tiny net (its activations
    # are large, so fp16 rounding in two different conv orders drifts); scores within 0.065
    (GraphRecipe(half=True), [("coffee.jpg", (256, 256))], 0.15),
]


@pytest.mark.parametrize(("recipe", "inputs", "bound"), PARITY)
def test_graph_matches_torch(recipe: GraphRecipe, inputs: list, bound: float) -> None:
    network = OnnxNetwork(exported_graph(recipe), threads=1)
    images = np.concatenate([letterboxed_photo(name, hw) for name, hw in inputs[:1]])
    batches = [images, *(letterboxed_photo(name, hw) for name, hw in inputs[1:])]
    for batch in batches:
        got = network(batch)
        want = reference_outputs(batch, recipe)
        for name, ref in zip(OUTPUT_NAMES, want):
            assert _rel_err(getattr(got, name), ref) <= bound, (name, batch.shape)
        np.testing.assert_array_equal(got.anchors, want[4])  # exact: arange + 0.5, times stride
        assert np.abs(got.scores - want[1]).max() <= (0.1 if recipe.half else 1e-4)


def test_batch_axis_is_free() -> None:
    network = OnnxNetwork(exported_graph(GraphRecipe()), threads=1)
    one = letterboxed_photo("coffee.jpg", (256, 256))
    single = network(one)
    triple = network(np.concatenate([one, letterboxed_photo("rocket.jpg", (256, 256)), one]))
    assert triple.boxes.shape == (3, 4, single.boxes.shape[2])
    np.testing.assert_allclose(triple.protos[2], single.protos[0], rtol=1e-5, atol=1e-4)


def test_metadata_round_trip() -> None:
    path = exported_graph(GraphRecipe(dynamic=True))
    props = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
    info = GraphInfo.from_json(props[METADATA_KEY], str(path))
    assert info == OnnxNetwork(path).info  # what onnxruntime reads is what onnx stored
    assert GraphInfo.from_json(info.to_json()) == info
    assert (info.imgsz, info.dynamic, info.half, info.int8) == ((256, 256), True, False, False)
    assert (info.postprocess, info.fuse_formula, info.opset) == ("official", "v8.0", 18)
    assert info.source_sha256 == sha256_file(TINY_CHECKPOINT)
    assert info.fastsam_core_version == __version__ and info.format_version == FORMAT_VERSION
    cfg = info.yolo_config()
    assert (info.reg_max, info.num_classes, info.strides) == (26, cfg.num_classes, cfg.strides)
    assert len(info.names) == info.num_classes and OnnxNetwork(path).input_hw is None


def _info_json(**changes: object) -> str:
    info = GraphInfo.for_config(
        FASTSAM_S, imgsz=(1024, 1024), dynamic=False, fuse_formula="v8.0",
        postprocess="official", half=False, int8=False, opset=18,
        fastsam_core_version=__version__, source_sha256=None,
    )  # fmt: skip
    data = json.loads(info.to_json())
    for key, value in changes.items():
        if value is dataclasses.MISSING:
            del data[key]
        else:
            data[key] = value
    return json.dumps(data)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"format_version": 2}, "format_version 2 is not supported"),
        ({"opset": dataclasses.MISSING}, r"missing \['opset'\]"),
        ({"colour": "red"}, r"unknown \['colour'\]"),
        ({"imgsz": [1000, 1024]}, "imgsz="),
        ({"imgsz": "1024"}, "expected a list"),
        ({"reg_max": 17}, "reg_max=17"),
        ({"names": ["a", "b"]}, "names="),
        ({"postprocess": "mine"}, "postprocess='mine'"),
        ({"source_sha256": 5}, "source_sha256=5"),
        ({"config": {"channels": [1]}}, "invalid graph metadata"),
    ],
)
def test_graph_info_rejects_bad_fields(changes: dict, message: str) -> None:
    with pytest.raises(ValueError, match=rf"^model\.onnx: .*{message}"):
        GraphInfo.from_json(_info_json(**changes), "model.onnx")


@pytest.mark.parametrize("text", ["{", "[1]", ""])
def test_graph_info_rejects_non_objects(text: str) -> None:
    with pytest.raises(ValueError, match=r"^x\.onnx: 'fastsam' metadata"):
        GraphInfo.from_json(text, "x.onnx")


def _small_model() -> YoloV8Seg:
    torch.manual_seed(0)
    cfg = dataclasses.replace(yolov8_seg_config("n"), imgsz=64, class_names=("thing",))
    return YoloV8Seg(cfg).eval()


def test_refuses_to_overwrite_and_leaves_no_partial_file(tmp_path: Path, monkeypatch) -> None:
    out = tmp_path / "model.onnx"
    out.write_bytes(b"keep me")
    with pytest.raises(FileExistsError, match="already exists; pass force=True"):
        export_onnx(_small_model(), out)
    assert out.read_bytes() == b"keep me"

    def broken_export(*args, **kwargs):
        Path(args[2]).write_bytes(b"half a graph")
        raise RuntimeError("exporter crashed")

    monkeypatch.setattr(torch.onnx, "export", broken_export)
    with pytest.raises(RuntimeError, match="exporter crashed"):
        export_onnx(_small_model(), tmp_path / "new.onnx")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]  # no temp file left


def test_force_overwrites_with_a_complete_graph(tmp_path: Path) -> None:
    out = tmp_path / "model.onnx"
    out.write_bytes(b"old")
    assert export_onnx(_small_model(), out, imgsz=64, force=True) == out
    network = OnnxNetwork(out, threads=1)
    assert network.input_hw == (64, 64) and network.info.source_sha256 is None
    assert network.info.names == ("thing",)
    assert [p.name for p in tmp_path.iterdir()] == ["model.onnx"]
    outputs = network(np.full((1, 3, 64, 64), 114, np.uint8))
    assert outputs.protos.shape == (1, 32, 16, 16) and outputs.anchors.shape == (84, 2)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"out": "model.pt"}, ValueError, "output must end in .onnx"),
        ({"opset": 13}, ValueError, "opset must be an int >= 18"),
        ({"postprocess": "mine"}, ValueError, "postprocess must be one of"),
        ({"model": 3}, TypeError, "model must be a YoloV8Seg"),
    ],
)
def test_bad_arguments(tmp_path: Path, kwargs: dict, error: type, message: str) -> None:
    args = {"model": _small_model(), "out": "model.onnx", **kwargs}
    with pytest.raises(error, match=message):
        export_onnx(args.pop("model"), tmp_path / args.pop("out"), **args)
    assert not any(tmp_path.iterdir())


# ---------------------------------------------------------------- INT8 (onnxrt/quantize.py)
def test_head_and_proto_stay_float() -> None:
    from fastsam_core.onnxrt.quantize import float_node_names

    model = onnx.load(str(exported_graph(GraphRecipe())))
    kept = set(float_node_names(model))
    convs = {n.name: n.input[1] for n in model.graph.node if n.op_type == "Conv"}
    head = {
        name
        for name, weight in convs.items()
        if not weight.startswith(("network.backbone", "network.neck"))
    }
    assert head and head <= kept  # box/class/coeff branches, Proto and the DFL bins conv
    assert not (set(convs) - head) & kept  # every backbone and neck conv is quantized
    assert any(w.startswith("network.head.proto") for n, w in convs.items() if n in kept)


def test_int8_graph_quantizes_only_backbone_and_neck() -> None:
    path = exported_graph(GraphRecipe(int8=True))
    network = OnnxNetwork(path, threads=1)
    assert network.info.int8 and not network.info.half
    model = onnx.load(str(path))
    produced_by = {out: node for node in model.graph.node for out in node.output}
    for node in (n for n in model.graph.node if n.op_type == "Conv"):
        weight = produced_by.get(node.input[1])
        quantized = weight is not None and weight.op_type == "DequantizeLinear"
        scope = (weight.input[0] if quantized else node.input[1]).removeprefix("network.")
        assert quantized == scope.startswith(("backbone", "neck")), (node.name, scope)
    image = letterboxed_photo("coffee.jpg", (256, 256))
    fp32 = OnnxNetwork(exported_graph(GraphRecipe()), threads=1)(image)
    int8 = network(image)
    np.testing.assert_array_equal(int8.anchors, fp32.anchors)
    assert int8.protos.shape == fp32.protos.shape and np.isfinite(int8.protos).all()


def test_mask_agreement_of_a_graph_with_itself_is_one() -> None:
    from fastsam_core.onnxrt.quantize import mask_agreement
    from tests.support.photos import photo

    path = exported_graph(GraphRecipe())
    report = mask_agreement(path, path, [photo("coffee.jpg"), photo("rocket.jpg")])
    assert report.mean_mask_iou == 1.0 and report.recall == 1.0
    assert all(im.fp32_detections == im.int8_detections == im.matched for im in report.images)
    assert "mean mask IoU 1.0000" in report.summary()


def test_quantize_refuses_fp16_graphs_and_overwrites(tmp_path: Path) -> None:
    from fastsam_core.onnxrt.quantize import quantize_graph
    from tests.support.photos import PHOTOS_DIR

    with pytest.raises(ValueError, match="is an fp16 graph; quantize an fp32 export"):
        quantize_graph(exported_graph(GraphRecipe(half=True)), tmp_path / "q.onnx", PHOTOS_DIR)
    (tmp_path / "q.onnx").write_bytes(b"keep")
    with pytest.raises(FileExistsError, match="already exists"):
        quantize_graph(exported_graph(GraphRecipe()), tmp_path / "q.onnx", PHOTOS_DIR)
    with pytest.raises(FileNotFoundError, match="no calibration photos|no image files match"):
        quantize_graph(exported_graph(GraphRecipe()), tmp_path / "r.onnx", tmp_path / "*.png")
    assert [p.name for p in tmp_path.iterdir()] == ["q.onnx"]
