"""`OnnxNetwork`: an exported graph (`fastsam export`) as a callable on uint8 batches (issue 14).

Torch-free: numpy and onnxruntime (imported when a network is opened). Opening checks, each with
one line naming the file, that the file is an ONNX model, that it carries fastsam metadata of a
supported format (`graph.GraphInfo`) and that its inputs and outputs are the graph contract of
`graph.py`; calls check the batch's dtype, rank and (for fixed graphs) size.
"""

from __future__ import annotations

import logging
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from fastsam_core.onnxrt.graph import INPUT_NAME, OUTPUT_NAMES, GraphInfo

logger = logging.getLogger(__name__)

Engine = Literal["onnxruntime"]
ENGINES: tuple[str, ...] = ("onnxruntime",)
# Preferred onnxruntime providers, best first; the first ones onnxruntime lists are used.
PREFERRED_PROVIDERS = (
    "TensorrtExecutionProvider",
    "CUDAExecutionProvider",
    "CPUExecutionProvider",
)
_ORT_LOG_ERRORS_ONLY = 3  # SessionOptions.log_severity_level: 0 verbose ... 3 error, 4 fatal


@dataclass(frozen=True)
class NetworkOutput:
    """The graph's outputs for one batch, float32 numpy arrays.

    Attributes:
        boxes: (B, 4, A) xywh in letterbox pixels.
        scores: (B, nc, A) class probabilities (sigmoid).
        mask_coeffs: (B, K, A) mask coefficients.
        protos: (B, K, H/4, W/4) mask prototypes.
        anchors: (A, 2) anchor cell centres (x, y) in letterbox pixels.
    """

    boxes: np.ndarray
    scores: np.ndarray
    mask_coeffs: np.ndarray
    protos: np.ndarray
    anchors: np.ndarray


def _import_onnxruntime() -> Any:
    try:
        import onnxruntime
    except ImportError as err:
        raise ImportError(
            f"running .onnx models needs onnxruntime ({err}): pip install onnxruntime"
        ) from None
    return onnxruntime


def default_providers() -> list[str]:
    """TensorRT / CUDA when this onnxruntime build lists them, always CPU last."""
    available = set(_import_onnxruntime().get_available_providers())
    return [p for p in PREFERRED_PROVIDERS if p in available or p == "CPUExecutionProvider"]


class OnnxNetwork:
    """An exported FastSAM graph: (B, 3, H, W) uint8 letterboxed RGB -> `NetworkOutput`.

    Args:
        path: `.onnx` file written by `fastsam export`.
        engine: "onnxruntime", the only engine: OpenVINO 2026.4 measured no faster on CPU
            (within 7% at fp32, slower at INT8; issue 14 engine notes).
        providers: onnxruntime execution providers; default `default_providers()`.
        threads: intra-op threads (onnxruntime's default: one per physical core).

    Raises:
        FileNotFoundError: no such file.
        ValueError: not an ONNX model, a graph of another model, unsupported metadata version,
            inputs/outputs not the fastsam contract, bad `engine` / `threads`.
        ImportError: onnxruntime is not installed.
    """

    def __init__(
        self,
        path: str | Path,
        engine: Engine = "onnxruntime",
        providers: list[str] | None = None,
        threads: int | None = None,
    ) -> None:
        if engine not in ENGINES:
            raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
        if threads is not None and (
            not isinstance(threads, int) or isinstance(threads, bool) or threads < 1
        ):
            raise ValueError(f"threads must be a positive int or None, got {threads!r}")
        self.path = Path(path)
        _check_regular_file(self.path)
        ort = _import_onnxruntime()
        options = ort.SessionOptions()
        options.log_severity_level = _ORT_LOG_ERRORS_ONLY
        # Idle intra-op threads sleep instead of spinning: on a shared 2-core CPU spinning made
        # FastSAM-s forwards 1.2-1.5x slower (640: 1168 vs 867 ms median, INT8 853 vs 581 ms;
        # onnxruntime 1.32, issue 14 engine notes), and it burns CPU other processes need.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        if threads is not None:
            options.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(
                str(self.path), sess_options=options, providers=providers or default_providers()
            )
        except Exception as err:  # noqa: BLE001 (onnxruntime raises its own pybind error types)
            if type(err).__module__.split(".")[0] not in ("onnxruntime", "builtins"):
                raise
            reason = str(err).strip().splitlines()[0][:200] if str(err).strip() else ""
            raise ValueError(
                f"{self.path} is not a readable ONNX model ({type(err).__name__}: {reason}); "
                "export one with `fastsam export MODEL OUT.onnx`"
            ) from None
        metadata = self.session.get_modelmeta().custom_metadata_map
        self.info: GraphInfo = GraphInfo.from_metadata(metadata, str(self.path))
        self.input_hw: tuple[int, int] | None = self._check_contract()
        logger.debug("opened %s on %s", self.path, self.session.get_providers())

    @property
    def providers(self) -> list[str]:
        """The providers the session actually runs on."""
        return list(self.session.get_providers())

    def _check_contract(self) -> tuple[int, int] | None:
        """The fixed (H, W) of the input (None when dynamic), after checking the graph's I/O."""
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        got_in = [(i.name, i.type, len(i.shape)) for i in inputs]
        got_out = [(o.name, o.type) for o in outputs]
        want_in = [(INPUT_NAME, "tensor(uint8)", 4)]
        want_out = [(name, "tensor(float)") for name in OUTPUT_NAMES]
        if got_in != want_in or got_out != want_out:
            raise ValueError(
                f"{self.path}: inputs {got_in} / outputs {[n for n, _ in got_out]} are not the "
                f"fastsam graph contract (input {INPUT_NAME!r} uint8 (B, 3, H, W); float outputs "
                f"{list(OUTPUT_NAMES)}); re-export it with `fastsam export`"
            )
        _, channels, height, width = inputs[0].shape
        if channels != 3:
            raise ValueError(f"{self.path}: input has {channels} channels, expected 3 (RGB)")
        if isinstance(height, int) and isinstance(width, int):
            return height, width
        return None

    def __call__(self, images: np.ndarray) -> NetworkOutput:
        """Run the graph on a letterboxed batch.

        Args:
            images: (B, 3, H, W) uint8 RGB, letterboxed like `ops.letterbox` (pad 114); H, W are
                `input_hw` for a fixed graph, multiples of 32 for a dynamic one.
        Returns:
            The `NetworkOutput` of the batch.
        """
        if not isinstance(images, np.ndarray):
            raise TypeError(
                f"{self.path}: images must be a numpy array, got {type(images).__name__}"
            )
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(
                f"{self.path}: images must be (B, 3, H, W) uint8 RGB, got "
                f"{tuple(images.shape)} {images.dtype}"
            )
        height, width = images.shape[2:]
        if images.shape[0] == 0:
            raise ValueError(f"{self.path}: empty batch {tuple(images.shape)}")
        if self.input_hw is not None and (height, width) != self.input_hw:
            h, w = self.input_hw
            raise ValueError(
                f"{self.path} is a fixed-size graph: expected input (B, 3, {h}, {w}), got "
                f"{tuple(images.shape)}; letterbox to {h}x{w} or export with --dynamic"
            )
        if height % 32 or width % 32 or not height or not width:
            raise ValueError(
                f"{self.path}: input H and W must be positive multiples of 32, got "
                f"{(height, width)}"
            )
        feed = {INPUT_NAME: np.ascontiguousarray(images)}
        return NetworkOutput(*self.session.run(list(OUTPUT_NAMES), feed))


def _check_regular_file(path: Path) -> None:
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise FileNotFoundError(f"ONNX model not found: {path}") from None
    except OSError as err:
        raise ValueError(f"{path}: cannot read the ONNX model ({err.strerror or err})") from None
    if not stat.S_ISREG(mode):
        raise ValueError(f"{path} is not a regular file; expected an .onnx model file")
