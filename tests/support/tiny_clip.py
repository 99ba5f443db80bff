"""A tiny random-init open_clip model registered from a config (no download) for prompt tests."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

TINY_CLIP_NAME = "fastsam-test-tiny-clip"
TINY_CLIP_CONFIG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 64, "head_width": 32, "patch_size": 8},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


def register_tiny_clip() -> str:
    """Register the tiny config with open_clip (idempotent); returns its model name."""
    import open_clip

    if TINY_CLIP_NAME not in open_clip.list_models():
        folder = Path(tempfile.mkdtemp(prefix="tiny-clip-"))
        path = folder / f"{TINY_CLIP_NAME}.json"
        path.write_text(json.dumps(TINY_CLIP_CONFIG))
        open_clip.add_model_config(path)
    return TINY_CLIP_NAME
