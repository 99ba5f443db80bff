"""Generate docs/WALKTHROUGH.md and docs/ARCHITECTURE.md from a real run (issues 11 and 17).

    python -m fastsam_core.walkthrough --out docs/

Runs the committed tiny checkpoint `tests/fixtures/ul120_tiny_seg_r26.pt` on a bundled photo,
calling every stage function of the everything-mode pipeline in the predictor's order and
recording each output's shape; the trace must end with exactly the `Predictor`'s masks and boxes,
so the documents cannot describe a pipeline the predictor no longer runs. File and function
names come from the function objects, so a rename changes the documents too.
`tests/unit/test_walkthrough.py` regenerates both and fails if they differ from the committed
files. Deterministic: seeded, one thread, CPU, shapes and counts only.
"""

from __future__ import annotations

import argparse
import ast
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from fastsam_core.io.images import load_images
from fastsam_core.mask_backends import get_mask_backend
from fastsam_core.model.capture import FEATURES
from fastsam_core.ops.anchors import decode_boxes, dfl_decode, make_anchors
from fastsam_core.ops.letterbox import letterbox_batch, letterbox_geometry
from fastsam_core.ops.masks import assemble_masks, mask_logits
from fastsam_core.ops.nms import non_max_suppression
from fastsam_core.postprocess import POSTPROCESS
from fastsam_core.predictor import Predictor
from fastsam_core.profiling import NO_CLOCK
from fastsam_core.results import Results

PACKAGE = Path(__file__).resolve().parent
REPO = PACKAGE.parent
MODEL = "tests/fixtures/ul120_tiny_seg_r26.pt"
PHOTO = "tests/fixtures/images/coffee.jpg"
IMGSZ = 640
COMMAND = "python -m fastsam_core.walkthrough --out docs/"


@dataclass
class Stage:
    """One step from pixels to masks: where it lives and what it produced."""

    title: str
    functions: list[Callable[..., Any]]
    outputs: list[tuple[str, Any]]  # (name, shape tuple or a short text)
    note: str


def where(fn: Callable[..., Any]) -> str:
    """`fastsam_core/ops/nms.py::non_max_suppression` for a function or method."""
    path = Path(inspect.getsourcefile(fn) or "?").resolve()
    return f"`{path.relative_to(REPO).as_posix()}::{fn.__qualname__}`"


def _shape(value: Any) -> str:
    return str(tuple(value.shape)) if isinstance(value, torch.Tensor) else str(value)


def trace(model: str = MODEL, photo: str = PHOTO, imgsz: int = IMGSZ) -> tuple[list[Stage], Any]:
    """Run every stage on `photo` and check the result against `Predictor`; returns the stages."""
    torch.manual_seed(0)
    predictor = Predictor(str(REPO / model), device="cpu", imgsz=imgsz, fast=False)
    opts, net, cfg = predictor.options, predictor.model, predictor.model.cfg
    image = load_images(str(REPO / photo))[0]
    geometry = letterbox_geometry(image.hw, opts.imgsz, stride=32, auto=True)
    batch = letterbox_batch([image.image], [geometry])  # (1, 3, H, W) uint8
    x = predictor.runner.to_input(batch)  # (1, 3, H, W) float32 in [0, 1]
    with torch.inference_mode(), net.capture(*FEATURES) as feats:
        out = net(x)
        distances = dfl_decode(out.box_dist, cfg.reg_max)  # (1, 4, A)
        points, strides = make_anchors(out.feature_sizes, cfg.strides)  # (A, 2), (A, 1)
        boxes_xywh = decode_boxes(distances, points, strides)  # (1, 4, A) input px
        scores = out.class_logits.sigmoid()  # (1, nc, A)
        det = non_max_suppression(
            boxes_xywh, scores, out.mask_coeffs, opts.conf, opts.iou, max_det=opts.max_det
        )[0]
        protos = out.protos[0]  # (K, Hp, Wp)
        logits = mask_logits(protos, det.coeffs)  # (N, Hp, Wp)
        masks, boxes, kept = POSTPROCESS[opts.postprocess].run(
            det, protos, geometry, get_mask_backend(opts.mask_backend),
            retina=opts.retina_masks, mask_rule=opts.mask_rule, full_box=True, timer=NO_CLOCK,
        )  # fmt: skip
    expected = predictor(str(REPO / photo))[0]
    if not (
        torch.equal(expected.masks.to_dense(), masks.to_dense())
        and torch.equal(expected.boxes, boxes.float())
    ):
        raise RuntimeError(
            "the walkthrough's stage-by-stage run no longer equals Predictor's output; update "
            "fastsam_core/walkthrough.py::trace to follow the predictor"
        )
    candidates = int((scores.max(1).values > opts.conf).sum())
    h, w = geometry.input_hw
    g = geometry
    stages = [
        Stage("Decode the photo", [load_images], [("image", image.image)],
              f"{photo}: H0 x W0 = {image.hw[0]} x {image.hw[1]}, uint8 RGB."),
        Stage("Letterbox", [letterbox_geometry, letterbox_batch], [("batch", batch)],
              f"resize by gain {g.gain:.4f} to {g.resized_hw[0]} x {g.resized_hw[1]}, pad "
              f"{g.pad_top} rows on top and {g.pad_left} columns left (value 114) to H x W = "
              f"{h} x {w}, multiples of 32 (`auto=True`: the smallest such rectangle)."),
        Stage("To network input", [type(predictor.runner).to_input], [("x", x)],
              "uint8 / 255: float32 RGB in [0, 1]."),
        Stage("Backbone", [type(net.backbone).forward],
              [(n, feats[n]) for n in ("backbone.p3", "backbone.p4", "backbone.p5")],
              f"`{cfg.backbone}`: strides 8, 16, 32; `model.capture(\"backbone.p3\", ...)`."),
        Stage("Neck (PAN-FPN)", [type(net.neck).forward],
              [(n, feats[n]) for n in ("neck.n3", "neck.n4", "neck.n5")],
              "top-down then bottom-up fusion; same widths as the backbone outputs."),
        Stage("Head", [type(net.head).forward],
              [(n, feats[n]) for n in ("head.box_dist", "head.class_logits", "head.mask_coeffs",
                                       "head.protos")],
              f"A = {' + '.join(f'{a}x{b}' for a, b in out.feature_sizes)} = "
              f"{out.class_logits.shape[2]} anchors; R = reg_max = {cfg.reg_max}, "
              f"K = {cfg.num_mask_coeffs}; prototypes at stride 4 from n3."),
        Stage("Box decode", [dfl_decode, make_anchors, decode_boxes],
              [("distances", distances), ("points", points), ("strides", strides),
               ("boxes_xywh", boxes_xywh)],
              "softmax over R bins per side -> expected distance; anchor centre +- distances, "
              "times the stride: boxes in input pixels."),
        Stage("Scores and NMS", [non_max_suppression],
              [("scores", scores), ("det.boxes", det.boxes), ("det.coeffs", det.coeffs)],
              f"sigmoid; {candidates} anchors score > conf {opts.conf}; greedy NMS at IoU "
              f"{opts.iou} keeps N = {len(det)} (each keeps its anchor's K coefficients)."),
        Stage("Masks", [POSTPROCESS[opts.postprocess].run, mask_logits, assemble_masks],
              [("logits", logits), ("masks", (len(masks), *image.hw))],
              "coefficients . prototypes (a matmul) -> drop the padding, resize to the photo, crop "
              "to each box, threshold logit > 0; full-image box step first (spec §3.7)."),
        Stage("Results", [Results], [("boxes", boxes), ("scores", kept.scores)],
              f"{len(masks)} masks as compact run-length rows; boxes in photo pixels."),
    ]  # fmt: skip
    return stages, {"cfg": cfg, "geometry": geometry, "n": len(det), "net": net, "imgsz": imgsz}


def _header(title: str) -> list[str]:
    return [
        f"# {title}",
        "",
        f"<!-- Generated by `{COMMAND}` from a real run; do not edit by hand. -->",
        "",
    ]


def render_walkthrough(stages: list[Stage], info: dict[str, Any]) -> str:
    """WALKTHROUGH.md: every stage with its file, function and output shapes."""
    cfg = info["cfg"]
    lines = _header("Walkthrough: from pixels to masks")
    lines += [
        (
            f"One real run of `{MODEL}` (a tiny YOLOv8-seg in the FastSAM-x layout: channels "
            f"{list(cfg.channels)}, reg_max {cfg.reg_max}, random weights) on `{PHOTO}` at "
            f"imgsz {info['imgsz']}, CPU, one thread. Shapes are (batch, channels, height, "
            "width); letters as in the code: H0 x W0 photo, H x W network input, A anchors, "
            "K coefficients, N masks. The same stages at another size: rerun the command with "
            "your own model."
        ),
        "",
    ]
    for i, stage in enumerate(stages, 1):
        lines += [f"## {i}. {stage.title}", ""]
        lines += [f"- code: {', '.join(where(fn) for fn in stage.functions)}"]
        lines += [f"- `{name}`: {_shape(value)}" for name, value in stage.outputs]
        lines += [f"- {stage.note}", ""]
    lines += [
        "## Reproduce",
        "",
        "```python",
        "from fastsam_core import Predictor",
        f'predictor = Predictor("{MODEL}", imgsz={info["imgsz"]}, fast=False)',
        'with predictor.model.capture("backbone.p5", "neck.n3", "head.protos") as feats:',
        f'    results = predictor("{PHOTO}")',
        "print({k: tuple(v.shape) for k, v in feats.items()})",
        "```",
        "",
        (
            f"`fastsam explain {PHOTO} --model {MODEL} --out explain/` draws the prototypes, the "
            "coefficients of the top masks and the per-level scores of this run."
        ),
        "",
    ]
    return "\n".join(lines)


def import_graph() -> dict[str, list[str]]:
    """fastsam_core package (or top-level module) -> the fastsam_core names it imports."""
    graph: dict[str, set[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE)
        unit = rel.parts[0] if len(rel.parts) > 1 else rel.stem
        if unit in ("__init__", "__main__", "walkthrough"):
            continue  # the public re-exports, `python -m` and this generator
        found = graph.setdefault(unit, set())
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            found |= {n.split(".")[1] for n in names if n.startswith("fastsam_core.")}
        found.discard(unit)
    return {unit: sorted(deps) for unit, deps in sorted(graph.items())}


# The layering of fastsam_core, top (entry points) to bottom (no fastsam_core imports).
LAYERS: dict[str, int] = {
    **dict.fromkeys(("cli", "serve"), 1),
    **dict.fromkeys(("tasks", "eval", "train", "viz", "label"), 2),
    **dict.fromkeys(
        (
            "predictor",
            "onnxrt",
            "onnx_export",
            "prompt_inputs",
            "predict_options",
            "postprocess",
            "runtime",
            "profiling",
            "stream",
            "prompts",
            "results",
            "export",
            "compact_masks",
            "compact_resample",
            "compact_layout",
            "row_index",
            "mask_backends",
            "weights",
            "hub",
            "data",
        ),
        3,
    ),
    "io": 4,
    **dict.fromkeys(("model", "ops"), 5),
    **dict.fromkeys(("config", "devices"), 6),
}


def _rows() -> list[tuple[int, list[str]]]:
    units = import_graph()
    rows: dict[int, list[str]] = {}
    for unit in units:
        rows.setdefault(LAYERS.get(unit, 0), []).append(unit)  # 0: not placed yet
    return sorted(rows.items())


def _violations() -> str:
    """Edges from a unit to a unit in a higher row (or to/from an unplaced unit)."""
    bad = [
        f"`{unit}` -> `{dep}`"
        for unit, deps in import_graph().items()
        for dep in deps
        if LAYERS.get(unit, 0) == 0 or LAYERS.get(dep, 0) == 0 or LAYERS[dep] < LAYERS[unit]
    ]
    return ", ".join(bad)


def render_architecture(stages: list[Stage], info: dict[str, Any]) -> str:
    """ARCHITECTURE.md: one page, image to masks, then the package layering."""
    from fastsam_core.model.flops import count_parameters

    params = count_parameters(info["net"])
    lines = _header("Architecture")
    lines += [
        (
            "FastSAM is a YOLOv8 instance-segmentation network trained to find every object. "
            "For each anchor (a cell of a stride 8, 16 or 32 grid) the head predicts a box, a "
            "score and "
            "K = 32 mask coefficients; one shared set of K prototype maps is mixed by those "
            "coefficients, so a mask is sigmoid(coefficients . prototypes) cropped to its box."
        ),
        "",
        (
            f"## Image to masks (shapes of the run in [WALKTHROUGH.md](WALKTHROUGH.md): `{PHOTO}`, "
            f"imgsz {info['imgsz']})"
        ),
        "",
        "| # | Stage | Code | Output |",
        "|---|---|---|---|",
    ]
    for i, stage in enumerate(stages, 1):
        code = "<br>".join(where(fn) for fn in stage.functions)
        shapes = "<br>".join(f"`{n}` {_shape(v)}" for n, v in stage.outputs)
        lines.append(f"| {i} | {stage.title} | {code} | {shapes} |")
    lines += [
        "",
        "The network is three parts, each a module with a straight-line `forward` "
        "(`fastsam_core/model/yolov8_seg.py::YoloV8Seg`): "
        + ", ".join(f"{part} {params[part]:,}" for part in ("backbone", "neck", "head"))
        + " parameters in this tiny model (`fastsam info MODEL --flops` for any model). The "
        "backbone is a part of the config (`YoloSegConfig.backbone`: `cspdarknet` or "
        "`timm:<name>`); `model.capture(...)` returns named features "
        "(`fastsam info MODEL --features`).",
        "",
        "## Layers and import directions",
        "",
        "Dependencies point down: a unit may import from its own row or any row below it.",
        "",
        *(f"{row}. {', '.join(f'`{u}`' for u in units)}" for row, units in _rows()),
        "",
        (
            "Rows 1-2 use the model (`cli/` is argparse only, one file per subcommand); row 3 "
            "turns network outputs into masks and files; `model/` and `ops/` import only torch "
            "and the "
            "config. `train/` and `eval/` never import each other "
            "(`tests/unit/test_data_import_graph.py`); `kernels/` (`fastsam_kernels`) and "
            "`weights_convert/` (`fastsam_weights_convert`) are imported lazily where they are "
            "used. "
            f"Imports against these rows today (read from the source): {_violations() or 'none'}."
        ),
        "",
    ]
    return "\n".join(lines)


def generate(out_dir: str | Path) -> list[Path]:
    """Write WALKTHROUGH.md and ARCHITECTURE.md into `out_dir`; returns their paths."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the same float sums on every machine
    try:
        stages, info = trace()
    finally:
        torch.set_num_threads(threads)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "WALKTHROUGH.md", out / "ARCHITECTURE.md"]
    paths[0].write_text(render_walkthrough(stages, info))
    paths[1].write_text(render_architecture(stages, info))
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="docs", help="folder for the two .md files (docs)")
    args = parser.parse_args(argv)
    for path in generate(args.out):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
