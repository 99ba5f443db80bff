"""CLIP image-text similarity for text prompts, through open_clip (spec §4.1 text_prompt, §4.2).

Both references load CLIP ViT-B/32 (OpenAI weights) on every call and encode one crop at a time
(ultralytics batches but reloads nothing only because it keeps the model on the predictor).
`ClipScorer` loads the model once, caches text embeddings by string, and encodes image crops in
batches on the model's device. `get_clip_scorer` keeps the most recent scorers for reuse.

open_clip is an optional dependency (`pip install 'fastsam-core[clip]'`), imported lazily.
"""

from __future__ import annotations

import functools
import logging
import os
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlparse

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

logger = logging.getLogger(__name__)

DEFAULT_CLIP_MODEL = "ViT-B-32"  # the official repo's clip.load('ViT-B/32')
DEFAULT_CLIP_PRETRAINED = "openai"
PreprocessInput = Literal["pil", "tensor"]


def import_open_clip() -> Any:
    """Import open_clip or raise ImportError with the install line."""
    try:
        import open_clip  # type: ignore[import-untyped]
    except ImportError as err:
        raise ImportError(
            "text prompts need open_clip (CLIP models): pip install 'fastsam-core[clip]' "
            f"(or pip install open_clip_torch); import failed with: {err}"
        ) from err
    return open_clip


def _looks_like_path(pretrained: str) -> bool:
    return (
        os.sep in pretrained
        or "/" in pretrained
        or pretrained.endswith((".pt", ".pth", ".bin", ".safetensors"))
    )


def _offline_message(
    open_clip: Any, model_name: str, pretrained: str, cache_dir: str | None
) -> str:
    cfg = open_clip.get_pretrained_cfg(model_name, pretrained) or {}
    sources = []
    if cfg.get("url"):
        sources.append(cfg["url"])
    if cfg.get("hf_hub"):
        sources.append(f"https://huggingface.co/{cfg['hf_hub'].rstrip('/')}")
    where = " or ".join(sources) or f"the open_clip release of {model_name}/{pretrained}"
    cache = cache_dir or "the Hugging Face / open_clip cache (~/.cache)"
    return (
        f"could not load CLIP weights {model_name!r} pretrained={pretrained!r} (looked in "
        f"{cache}). Offline? Download {where} on a connected machine, copy the file here and pass "
        f"pretrained='/path/to/file' (CLI: --clip-weights /path/to/file)"
    )


def _download_hosts(open_clip: Any, model_name: str, pretrained: str) -> list[str]:
    cfg = open_clip.get_pretrained_cfg(model_name, pretrained) or {}
    hosts = ["huggingface.co"] if cfg.get("hf_hub") else []
    if cfg.get("url"):
        hosts.append(urlparse(cfg["url"]).hostname or "")
    return [h for h in hosts if h]


def _cached_locally(open_clip: Any, model_name: str, pretrained: str, cache: str | None) -> bool:
    """True when the weights of an open_clip tag are already on disk (no network needed)."""
    cfg = open_clip.get_pretrained_cfg(model_name, pretrained) or {}
    if cfg.get("file"):
        return True
    if cfg.get("hf_hub"):
        try:
            from huggingface_hub import try_to_load_from_cache
        except ImportError:
            pass
        else:
            repo_id, filename = os.path.split(cfg["hf_hub"])  # "org/model/" -> default names
            defaults = ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"]
            names = [filename] if filename else defaults
            for name in names:
                if isinstance(try_to_load_from_cache(repo_id, name, cache_dir=cache), str):
                    return True
    if cfg.get("url"):
        root = Path(cache) if cache else Path.home() / ".cache" / "clip"
        if (root / os.path.basename(urlparse(cfg["url"]).path)).is_file():
            return True
    return False


def _reachable(host: str, timeout: float = 3.0) -> bool:
    """Whether a TCP connection to host:443 opens within `timeout` seconds."""
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
    except OSError:
        return False
    return True


class ClipScorer:
    """A CLIP model, its image transform and tokenizer, with cached text embeddings.

    Args:
        model_name: any open_clip model name (`open_clip.list_models()`), default "ViT-B-32".
        pretrained: an open_clip pretrained tag ("openai", "laion2b_s34b_b79k"...), a local
            checkpoint file, or None for random weights (tests, benchmarks).
        device: where the model runs; image crops are moved there in batches.
        cache_dir: where open_clip downloads and looks for weights.
        precision: open_clip precision ("fp32", "fp16", "bf16"...).
        batch_size: crops per forward pass.
        preprocess_input: "pil" feeds PIL images to the model's transform (as the references);
            "tensor" feeds float tensors on the model's device to the same transform (faster on a
            GPU; bicubic antialiased resize on tensors differs from PIL's by a few levels).
    """

    def __init__(
        self,
        model_name: str = DEFAULT_CLIP_MODEL,
        pretrained: str | Path | None = DEFAULT_CLIP_PRETRAINED,
        device: str | torch.device = "cpu",
        cache_dir: str | Path | None = None,
        precision: str = "fp32",
        batch_size: int = 64,
        preprocess_input: PreprocessInput = "pil",
    ) -> None:
        open_clip = import_open_clip()
        hub = model_name.startswith(("hf-hub:", "local-dir:"))  # open_clip's own prefixes
        if not hub and model_name not in open_clip.list_models():
            raise ValueError(
                f"unknown open_clip model {model_name!r}; choose one of open_clip.list_models() "
                f"(e.g. 'ViT-B-32', 'ViT-B-16', 'ViT-L-14')"
            )
        weights = None if pretrained is None else str(pretrained)
        cache = None if cache_dir is None else str(cache_dir)
        if weights is not None and _looks_like_path(weights) and not Path(weights).is_file():
            raise FileNotFoundError(
                f"CLIP weights file {weights} does not exist; pass an existing file or an "
                "open_clip tag such as 'openai' (see "
                f"open_clip.list_pretrained_tags_by_model({model_name!r}))"
            )
        if weights is not None and not hub and not _looks_like_path(weights):
            tags = open_clip.list_pretrained_tags_by_model(model_name)
            if weights not in tags:
                raise ValueError(
                    f"{model_name!r} has no pretrained tag {weights!r}; available: {tags}, or pass "
                    "a local checkpoint path"
                )
        if (
            weights is not None
            and not hub
            and not _looks_like_path(weights)
            and not _cached_locally(open_clip, model_name, weights, cache)
            and not any(_reachable(h) for h in _download_hosts(open_clip, model_name, weights))
        ):  # offline and not cached: fail now, not after the downloader's retries (~60 s)
            raise FileNotFoundError(_offline_message(open_clip, model_name, weights, cache))
        try:
            model, _, preprocess = open_clip.create_model_and_transforms(
                model_name, pretrained=weights, device=device, precision=precision, cache_dir=cache
            )
        except (OSError, RuntimeError, ValueError) as err:
            if weights is None or _looks_like_path(weights):
                raise
            raise FileNotFoundError(
                _offline_message(open_clip, model_name, weights, cache)
            ) from err
        tokenizer = open_clip.get_tokenizer(model_name, cache_dir=cache)
        self._setup(model, preprocess, tokenizer, batch_size, preprocess_input)
        self.name = f"{model_name}/{weights}"

    @classmethod
    def from_modules(
        cls,
        model: torch.nn.Module,
        preprocess: Callable[[Any], torch.Tensor],
        tokenizer: Callable[[list[str]], torch.Tensor],
        batch_size: int = 64,
        preprocess_input: PreprocessInput = "pil",
    ) -> ClipScorer:
        """Wrap an already-built open_clip-style model (encode_image / encode_text)."""
        scorer = cls.__new__(cls)
        scorer._setup(model, preprocess, tokenizer, batch_size, preprocess_input)
        scorer.name = type(model).__name__
        return scorer

    def _setup(
        self,
        model: torch.nn.Module,
        preprocess: Callable[[Any], torch.Tensor],
        tokenizer: Callable[[list[str]], torch.Tensor],
        batch_size: int,
        preprocess_input: PreprocessInput,
    ) -> None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
        if preprocess_input not in ("pil", "tensor"):
            raise ValueError(
                f"preprocess_input must be 'pil' or 'tensor', got {preprocess_input!r}"
            )
        self.model = model.eval()
        self.preprocess = preprocess
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.preprocess_input = preprocess_input
        self._text_cache: dict[str, torch.Tensor] = {}

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    # ------------------------------------------------------------------ encoders
    @torch.inference_mode()
    def encode_texts(self, texts: Sequence[str]) -> torch.Tensor:
        """(T, D) float32 L2-normalised text embeddings on the model's device (cached by text)."""
        missing = [t for t in dict.fromkeys(texts) if t not in self._text_cache]
        if missing:
            tokens = self.tokenizer(missing).to(self.device)  # (T', L) int64
            encoded = self.model.encode_text(tokens)  # type: ignore[operator]
            features = F.normalize(encoded.float(), dim=-1)  # (T', D)
            for text, feature in zip(missing, features):
                self._text_cache[text] = feature
        return torch.stack([self._text_cache[t] for t in texts])  # (T, D)

    def preprocess_crops(self, crops: Sequence[np.ndarray]) -> torch.Tensor:
        """(h, w, 3) uint8 RGB crops -> (K, 3, S, S) model inputs on the model's device."""
        if self.preprocess_input == "pil":
            images = [self.preprocess(Image.fromarray(crop)) for crop in crops]  # (3, S, S) each
            return torch.stack(images).to(self.device, self.dtype)  # (K, 3, S, S)
        tensors = []
        for crop in crops:
            chw = torch.from_numpy(np.ascontiguousarray(crop)).to(self.device).permute(2, 0, 1)
            tensors.append(self.preprocess(chw.float() / 255.0))  # (3, h, w) -> (3, S, S)
        return torch.stack(tensors).to(self.dtype)  # (K, 3, S, S)

    @torch.inference_mode()
    def encode_images(self, crops: Sequence[np.ndarray]) -> torch.Tensor:
        """(K, D) float32 L2-normalised embeddings of (h, w, 3) uint8 RGB crops, in batches."""
        features = []
        for start in range(0, len(crops), self.batch_size):
            batch = self.preprocess_crops(crops[start : start + self.batch_size])  # (b, 3, S, S)
            encoded = self.model.encode_image(batch)  # type: ignore[operator]
            features.append(F.normalize(encoded.float(), dim=-1))  # (b, D)
        if not features:
            return torch.zeros((0, self._embed_dim()), device=self.device)
        return torch.cat(features)  # (K, D)

    def similarity(self, crops: Sequence[np.ndarray], texts: Sequence[str]) -> torch.Tensor:
        """(T, K) float32 cosine similarity of each text with each crop, on the CPU."""
        text_features = self.encode_texts(texts)  # (T, D)
        image_features = self.encode_images(crops)  # (K, D)
        return (text_features @ image_features.T).cpu()  # (T, D) @ (D, K) -> (T, K)

    def _embed_dim(self) -> int:
        return int(self.encode_texts(["a photo"]).shape[1])


@dataclass(frozen=True)
class ClipSettings:
    """Which CLIP model text prompts use (the owner of a run builds one `ClipScorer` from it).

    Attributes:
        model: open_clip model name.
        weights: open_clip pretrained tag, a local checkpoint file (offline), or None (random).
        cache_dir: where open_clip downloads and looks for weights.
    """

    model: str = DEFAULT_CLIP_MODEL
    weights: str | None = DEFAULT_CLIP_PRETRAINED
    cache_dir: str | None = None

    def build(self, device: str | torch.device = "cpu") -> ClipScorer:
        """The scorer on `device` (shared through `get_clip_scorer`: built once per process)."""
        return get_clip_scorer(self.model, self.weights, str(device), self.cache_dir)


@functools.lru_cache(maxsize=2)
def get_clip_scorer(
    model_name: str = DEFAULT_CLIP_MODEL,
    pretrained: str | None = DEFAULT_CLIP_PRETRAINED,
    device: str = "cpu",
    cache_dir: str | None = None,
    precision: str = "fp32",
) -> ClipScorer:
    """A shared `ClipScorer` for these settings: built on first use, then reused across calls."""
    logger.info("loading CLIP %s (%s) on %s", model_name, pretrained, device)
    return ClipScorer(
        model_name, pretrained, device=device, cache_dir=cache_dir, precision=precision
    )
