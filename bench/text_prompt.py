"""Text prompt over 100 masks: batched CLIP scoring vs one crop at a time (issue #4, STYLE §10).

Question: how much faster is `ClipScorer`'s batched scoring than scoring one crop per forward pass
(what the official FastSAM repo does), with the same model, crops and texts?

Inputs: a real photo (the bundled tests/fixtures/images/chelsea.jpg, a cat, long side 1024) with N synthetic masks (seeded random
ellipses, every area > 100 px so all N are scored) and their tight boxes. Model: open_clip
ViT-B-32 with RANDOM weights (pretrained=None: no download; the cost is the architecture's, not
the weights'), or a tiny random model with --quick. Text embeddings are cached after the warm-up
(as in real use), so the timed work is crops + preprocessing + image encoder + selection.

Rows:
* prompt_batched: `prompt(results, texts=..., clip_scorer=scorer)`, batch_size crops per forward.
* prompt_one_by_one: the same call with a scorer of batch_size=1 (same model object).
* encode_batched / encode_one_by_one: the image encoder alone on preprocessed crops.
* crops_and_preprocess: masked crops + the model's transform (shared by both prompt rows).

Usage:
    python -m bench.text_prompt                    # ViT-B-32 (random), 100 masks, CPU
    python -m bench.text_prompt --device cuda
    python -m bench.text_prompt --quick            # CI smoke test: tiny model, 20 masks
Writes bench/results/text_prompt-<device>-<UTC>.json and prints a table.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.common import env_info, measure, write_json
from fastsam_core.prompts import ClipScorer, masked_crops, prompt
from fastsam_core.results import Results, results_from_dense

REPO_ROOT = Path(__file__).resolve().parents[1]
PHOTO = REPO_ROOT / "tests" / "fixtures" / "images" / "chelsea.jpg"  # bundled (CC0)
TINY = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 64, "head_width": 32, "patch_size": 8},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}
TEXTS = ["a cat", "a dog", "a sofa"]


def make_results(num_masks: int, long_side: int = 1024, seed: int = 0) -> Results:
    """A photo (or noise if absent) with `num_masks` random ellipse masks, all larger than 100 px."""
    if PHOTO.exists():
        from PIL import Image

        with Image.open(PHOTO) as img:
            r = long_side / max(img.size)
            img = img.convert("RGB").resize((round(img.width * r), round(img.height * r)))
            image = torch.from_numpy(np.asarray(img).copy())
    else:
        image = torch.randint(0, 256, (768, long_side, 3), dtype=torch.uint8)
    height, width = image.shape[:2]
    gen = torch.Generator().manual_seed(seed)
    ys = torch.arange(height, dtype=torch.float32)[:, None]
    xs = torch.arange(width, dtype=torch.float32)[None, :]
    masks = torch.zeros((num_masks, height, width), dtype=torch.bool)
    for i in range(num_masks):
        cx, cy = (
            float(torch.rand(1, generator=gen)) * width,
            float(torch.rand(1, generator=gen)) * height,
        )
        rx = 20 + float(torch.rand(1, generator=gen)) * width / 4
        ry = 20 + float(torch.rand(1, generator=gen)) * height / 4
        masks[i] = ((xs - cx) / rx) ** 2 + ((ys - cy) / ry) ** 2 <= 1
    boxes = torch.zeros((num_masks, 4))
    for i, m in enumerate(masks):
        rows, cols = m.any(1).nonzero().flatten(), m.any(0).nonzero().flatten()
        boxes[i] = torch.tensor([cols[0], rows[0], cols[-1] + 1, rows[-1] + 1]).float()
    scores = torch.linspace(0.99, 0.41, num_masks)
    return results_from_dense(masks, boxes, scores, (height, width), orig_image=image)


def build_scorer(quick: bool, device: str, batch_size: int, preprocess_input: str) -> ClipScorer:
    torch.manual_seed(0)
    if not quick:
        return ClipScorer("ViT-B-32", pretrained=None, device=device, batch_size=batch_size,
                          preprocess_input=preprocess_input)  # fmt: skip
    import open_clip

    folder = Path(tempfile.mkdtemp(prefix="bench-tiny-clip-"))
    (folder / "bench-tiny-clip.json").write_text(json.dumps(TINY))
    open_clip.add_model_config(folder / "bench-tiny-clip.json")
    return ClipScorer("bench-tiny-clip", pretrained=None, device=device, batch_size=batch_size,
                      preprocess_input=preprocess_input)  # fmt: skip


def run(args: argparse.Namespace) -> dict[str, Any]:
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    results = make_results(args.masks).to(device)
    batched = build_scorer(args.quick, args.device, args.batch_size, args.preprocess)
    single = ClipScorer.from_modules(batched.model, batched.preprocess, batched.tokenizer,
                                     batch_size=1, preprocess_input=args.preprocess)  # fmt: skip
    batched.encode_texts(TEXTS)
    single.encode_texts(TEXTS)
    crops, keep = masked_crops(results.orig_image, results.masks_original(), results.boxes)
    inputs = batched.preprocess_crops(crops)  # (K, 3, S, S)
    assert keep.numel() == args.masks, f"expected every mask scored, got {keep.numel()}"

    def encode_one_by_one() -> None:
        with torch.inference_mode():
            for i in range(inputs.shape[0]):
                batched.model.encode_image(inputs[i : i + 1])

    def encode_batched() -> None:
        with torch.inference_mode():
            for start in range(0, inputs.shape[0], args.batch_size):
                batched.model.encode_image(inputs[start : start + args.batch_size])

    cases = {
        "prompt_batched": lambda: prompt(results, texts=TEXTS, clip_scorer=batched),
        "prompt_one_by_one": lambda: prompt(results, texts=TEXTS, clip_scorer=single),
        "encode_batched": encode_batched,
        "encode_one_by_one": encode_one_by_one,
        "crops_and_preprocess": lambda: batched.preprocess_crops(
            masked_crops(results.orig_image, results.masks_original(), results.boxes)[0]
        ),
    }
    rows = []
    for name, fn in cases.items():
        stats = measure(fn, warmup=args.warmup, repeats=args.repeats, device=device)
        rows.append({"case": name, **stats.to_dict()})
        print(f"{name:22s} {stats.ms()}", flush=True)
    # Same answers: the batched and one-by-one prompts pick the same masks with the same scores.
    a = prompt(results, texts=TEXTS, clip_scorer=batched)
    b = prompt(results, texts=TEXTS, clip_scorer=single)
    max_diff = float((a.prompt_scores - b.prompt_scores).abs().max())
    assert a.source_ids.tolist() == b.source_ids.tolist() and max_diff < 1e-4, max_diff
    median = {r["case"]: r["median"] for r in rows}
    speedups = {
        "prompt": median["prompt_one_by_one"] / median["prompt_batched"],
        "encode": median["encode_one_by_one"] / median["encode_batched"],
    }
    print(f"speedup batched vs one-by-one: prompt {speedups['prompt']:.2f}x, "
          f"encoder {speedups['encode']:.2f}x (max score diff {max_diff:.2e})")  # fmt: skip
    return {
        "question": "text prompt over N masks: batched CLIP scoring vs one crop at a time",
        "environment": env_info(device),
        "config": {
            "model": "bench-tiny-clip" if args.quick else "ViT-B-32 (random weights)",
            "masks": args.masks,
            "texts": TEXTS,
            "batch_size": args.batch_size,
            "preprocess_input": args.preprocess,
            "image_hw": list(results.orig_hw),
            "input_size": list(inputs.shape[1:]),
            "repeats": args.repeats,
            "warmup": args.warmup,
        },
        "results": rows,
        "speedup": speedups,
        "max_prompt_score_diff": max_diff,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--masks", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--preprocess", choices=("pil", "tensor"), default="pil")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1, help="untimed calls before timing")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--quick", action="store_true", help="tiny model, 20 masks, 1 repeat")
    parser.add_argument("--out", default=None, help="JSON path (default bench/results/...)")
    args = parser.parse_args(argv)
    if args.quick:
        args.masks, args.repeats = min(args.masks, 20), 1
    payload = run(args)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    out = args.out or REPO_ROOT / "bench" / "results" / f"text_prompt-{args.device}-{stamp}.json"
    print(f"wrote {write_json(out, payload)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
