"""fastsam_core.onnxrt.session: OnnxNetwork opens only fastsam graphs and checks every batch, with
one-line errors naming the file; it runs with torch not importable. Issue 14."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

from fastsam_core.onnxrt import session as session_module
from fastsam_core.onnxrt.graph import METADATA_KEY
from fastsam_core.onnxrt.session import OnnxNetwork, default_providers
from tests.support.onnx_graphs import GraphRecipe, exported_graph, foreign_graph
from tests.support.photos import photo

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def fixed() -> OnnxNetwork:
    return OnnxNetwork(exported_graph(GraphRecipe()), threads=1)


def _with_metadata(src: Path, dst: Path, value: str | None) -> Path:
    """`src` with its fastsam metadata replaced by `value` (removed when None)."""
    model = onnx.load(str(src))
    props = [p for p in model.metadata_props if p.key != METADATA_KEY]
    del model.metadata_props[:]
    model.metadata_props.extend(props)
    if value is not None:
        model.metadata_props.add(key=METADATA_KEY, value=value)
    onnx.save(model, str(dst))
    return dst


def test_not_an_onnx_file(tmp_path: Path) -> None:
    text = tmp_path / "notes.onnx"
    text.write_text("not a protobuf")
    with pytest.raises(ValueError, match=r"notes\.onnx is not a readable ONNX model"):
        OnnxNetwork(text)
    with pytest.raises(ValueError, match=r"coffee\.jpg is not a readable ONNX model"):
        OnnxNetwork(photo("coffee.jpg"))
    with pytest.raises(FileNotFoundError, match="ONNX model not found: .*missing.onnx"):
        OnnxNetwork(tmp_path / "missing.onnx")
    with pytest.raises(ValueError, match="is not a regular file"):
        OnnxNetwork(tmp_path)


def test_truncated_graph(tmp_path: Path) -> None:
    data = exported_graph(GraphRecipe()).read_bytes()
    cut = tmp_path / "cut.onnx"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"cut\.onnx is not a readable ONNX model"):
        OnnxNetwork(cut)


def test_graph_of_another_model(tmp_path: Path) -> None:
    other = foreign_graph(tmp_path / "resnet.onnx", {"author": "someone"})
    with pytest.raises(ValueError, match=r"resnet\.onnx is an ONNX graph without 'fastsam' meta"):
        OnnxNetwork(other)
    # another model stamped with our metadata: its inputs/outputs give it away
    info = OnnxNetwork(exported_graph(GraphRecipe())).info.to_json()
    forged = foreign_graph(tmp_path / "forged.onnx", {METADATA_KEY: info})
    with pytest.raises(ValueError, match=r"forged\.onnx: inputs .* are not the fastsam graph"):
        OnnxNetwork(forged)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (None, "without 'fastsam' metadata"),
        ("{broken", "'fastsam' metadata is not JSON"),
        (json.dumps({"format_version": 99}), "format_version 99 is not supported"),
    ],
)
def test_bad_metadata(tmp_path: Path, value: str | None, message: str) -> None:
    path = _with_metadata(exported_graph(GraphRecipe()), tmp_path / "model.onnx", value)
    with pytest.raises(ValueError, match=rf"model\.onnx.*{message}"):
        OnnxNetwork(path)


@pytest.mark.parametrize(
    ("images", "message"),
    [
        (np.zeros((1, 3, 224, 224), np.uint8), r"fixed-size graph: expected input \(B, 3, 256, "),
        (np.zeros((1, 3, 256, 320), np.uint8), "letterbox to 256x256 or export with --dynamic"),
        (np.zeros((1, 3, 256, 256), np.float32), r"must be \(B, 3, H, W\) uint8 RGB, got .*float"),
        (np.zeros((3, 256, 256), np.uint8), r"got \(3, 256, 256\) uint8"),
        (np.zeros((1, 256, 256, 3), np.uint8), r"got \(1, 256, 256, 3\) uint8"),
        (np.zeros((0, 3, 256, 256), np.uint8), "empty batch"),
    ],
)
def test_bad_batches(fixed: OnnxNetwork, images: np.ndarray, message: str) -> None:
    with pytest.raises(ValueError, match=message) as caught:
        fixed(images)
    assert str(fixed.path) in str(caught.value) and "\n" not in str(caught.value)


def test_dynamic_graph_needs_multiples_of_32() -> None:
    network = OnnxNetwork(exported_graph(GraphRecipe(dynamic=True)), threads=1)
    assert network.input_hw is None
    with pytest.raises(ValueError, match=r"multiples of 32, got \(256, 200\)"):
        network(np.zeros((1, 3, 256, 200), np.uint8))
    out = network(np.full((2, 3, 96, 160), 114, np.uint8))
    assert out.boxes.shape == (2, 4, 12 * 20 + 6 * 10 + 3 * 5)
    assert out.protos.shape == (2, 32, 24, 40) and out.anchors.shape == (315, 2)


def test_options_are_checked(tmp_path: Path) -> None:
    path = exported_graph(GraphRecipe())
    with pytest.raises(ValueError, match="engine must be one of"):
        OnnxNetwork(path, engine="tvm")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="threads must be a positive int"):
        OnnxNetwork(path, threads=0)
    options = OnnxNetwork(path, threads=2).session.get_session_options()
    assert options.intra_op_num_threads == 2
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"


def test_providers_prefer_gpus(monkeypatch: pytest.MonkeyPatch) -> None:
    import onnxruntime

    assert default_providers()[-1] == "CPUExecutionProvider"
    listed = ["CPUExecutionProvider", "CUDAExecutionProvider", "TensorrtExecutionProvider"]
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: listed)
    assert default_providers() == list(session_module.PREFERRED_PROVIDERS)
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: listed[:2])
    assert default_providers() == ["CUDAExecutionProvider", "CPUExecutionProvider"]


def test_runs_with_torch_blocked() -> None:
    code = f"""
import sys
sys.modules["torch"] = None  # `import torch` raises ImportError
import numpy as np
from fastsam_core.onnxrt.session import OnnxNetwork
net = OnnxNetwork({str(exported_graph(GraphRecipe()))!r}, threads=1)
out = net(np.full((1, 3, 256, 256), 114, np.uint8))
assert out.boxes.shape == (1, 4, 1344) and out.boxes.dtype == np.float32
assert not [m for m in sys.modules if m.split(".")[0] == "torch" and sys.modules[m] is not None]
print("ok", net.info.num_classes)
"""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=REPO
    )
    assert done.returncode == 0 and done.stdout.startswith("ok"), done.stderr


def test_missing_onnxruntime_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(ImportError, match="pip install onnxruntime$"):
        OnnxNetwork(exported_graph(GraphRecipe()))
