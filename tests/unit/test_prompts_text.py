"""Text prompts with a tiny random-init open_clip model (no download): crops, batching, caching,
selection rules (incl. the official repo's index-remap bug), errors and devices."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from fastsam_core.prompts import (
    ClipScorer,
    ClipSettings,
    get_clip_scorer,
    masked_crops,
    prompt,
    select_texts,
)
from fastsam_core.prompts import clip_scorer as clip_scorer_module
from fastsam_core.prompts.text import official_text_index
from tests.support.official_prompts import official_text_select
from tests.support.prompt_data import synthetic_results

open_clip = pytest.importorskip("open_clip", reason="text prompts need the clip extra")
from tests.support.tiny_clip import register_tiny_clip


@pytest.fixture(scope="module")
def tiny_name() -> str:
    return register_tiny_clip()


@pytest.fixture(scope="module")
def scorer(tiny_name: str) -> ClipScorer:
    torch.manual_seed(0)
    return ClipScorer(tiny_name, pretrained=None, batch_size=8)


def test_masked_crops_black_background_and_area_rule() -> None:
    res, dense = synthetic_results(n=12, seed=4)
    crops, keep = masked_crops(res.orig_image, res.masks, res.boxes)
    areas = dense.sum((1, 2))
    assert keep.tolist() == (areas > 100).nonzero().flatten().tolist()
    image = res.orig_image.numpy()
    for crop, i in zip(crops, keep.tolist()):
        x1, y1, x2, y2 = (int(v) for v in res.boxes[i].tolist())
        expected = image[y1:y2, x1:x2] * dense[i, y1:y2, x1:x2, None].numpy()
        assert crop.dtype == np.uint8 and np.array_equal(crop, expected)
    crops, keep = masked_crops(res.orig_image, res.masks, res.boxes, min_area=10_000)
    assert crops == [] and keep.numel() == 0


def test_batched_equals_one_by_one(scorer: ClipScorer) -> None:
    res, _ = synthetic_results(n=20, hw=(90, 120), seed=1)
    crops, _ = masked_crops(res.orig_image, res.masks, res.boxes)
    assert len(crops) > 8  # more than one batch of 8
    texts = ["a dog", "a cat", "a red car"]
    batched = scorer.similarity(crops, texts)  # (T, K)
    single = torch.cat([scorer.similarity([c], texts) for c in crops], dim=1)
    assert batched.shape == (3, len(crops))
    torch.testing.assert_close(batched, single, atol=1e-5, rtol=0)
    one_batch = ClipScorer.from_modules(scorer.model, scorer.preprocess, scorer.tokenizer, 1000)
    torch.testing.assert_close(one_batch.similarity(crops, texts), single, atol=1e-5, rtol=0)


def test_text_embeddings_cached(scorer: ClipScorer, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[list[str]] = []
    tokenizer = scorer.tokenizer
    fresh = ClipScorer.from_modules(
        scorer.model, scorer.preprocess, lambda t: calls.append(list(t)) or tokenizer(t)
    )
    first = fresh.encode_texts(["a dog", "a cat"])
    again = fresh.encode_texts(["a cat", "a dog", "a dog"])
    assert calls == [["a dog", "a cat"]]  # encoded once, reused
    torch.testing.assert_close(again, first[[1, 0, 0]])
    fresh.encode_texts(["a bird", "a dog"])
    assert calls[-1] == ["a bird"]
    norms = first.norm(dim=1)
    torch.testing.assert_close(norms, torch.ones(2))


def test_model_loaded_once(tiny_name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """ClipSettings.build shares one scorer per process (get_clip_scorer)."""
    created: list[str] = []
    original = open_clip.create_model_and_transforms

    def counting(name: str, **kwargs: object) -> object:
        created.append(name)
        return original(name, **kwargs)

    monkeypatch.setattr(open_clip, "create_model_and_transforms", counting)
    get_clip_scorer.cache_clear()
    res, _ = synthetic_results(seed=2)
    for _ in range(3):
        out = prompt(res, texts=["a dog"], clip_scorer=ClipSettings(tiny_name, None).build())
        assert len(out) == 1
    assert created == [tiny_name]
    get_clip_scorer.cache_clear()


def test_predictor_builds_clip_once_per_run(
    tiny_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The Predictor owns one scorer: built on the first text prompt (not at construction, not
    per image), before the network runs."""
    from fastsam_core import Predictor
    from fastsam_core.config import yolov8_seg_config
    from fastsam_core.model.yolov8_seg import build_model

    created: list[str] = []
    original = open_clip.create_model_and_transforms

    def counting(name: str, **kwargs: object) -> object:
        created.append(name)
        return original(name, **kwargs)

    monkeypatch.setattr(open_clip, "create_model_and_transforms", counting)
    get_clip_scorer.cache_clear()
    torch.manual_seed(0)
    net = build_model(yolov8_seg_config("n", imgsz=64))
    predictor = Predictor(net, imgsz=64, conf=0.0, clip=ClipSettings(tiny_name, None))
    images = [np.full((40, 50, 3), v, np.uint8) for v in (30, 90, 200)]
    predictor(images[0])
    assert created == []  # no text prompt yet: no CLIP
    for image in images:
        predictor(image, texts="a dog")
    predictor(images, texts="a cat")
    assert created == [tiny_name]
    get_clip_scorer.cache_clear()


def test_missing_clip_weights_offline_fail_fast(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Offline with nothing cached: one FileNotFoundError in well under a second, naming where
    to get the file and --clip-weights, without calling the downloader (which retries ~60 s)."""
    from fastsam_core import Predictor
    from fastsam_core.config import yolov8_seg_config
    from fastsam_core.model.yolov8_seg import build_model

    probed: list[str] = []

    def offline(host: str, timeout: float = 3.0) -> bool:
        probed.append(host)
        return False

    monkeypatch.setattr(clip_scorer_module, "_reachable", offline)
    downloads: list[object] = []
    monkeypatch.setattr(
        open_clip, "create_model_and_transforms", lambda *a, **k: downloads.append(a)
    )
    get_clip_scorer.cache_clear()
    start = time.perf_counter()
    with pytest.raises(FileNotFoundError, match=r"Offline\? Download .*--clip-weights"):
        ClipScorer("ViT-B-32", "openai", cache_dir=str(tmp_path))
    assert time.perf_counter() - start < 2.0 and probed and downloads == []
    net = build_model(yolov8_seg_config("n", imgsz=64))
    predictor = Predictor(net, imgsz=64, clip=ClipSettings("ViT-B-32", "openai", str(tmp_path)))
    forwards: list[int] = []
    monkeypatch.setattr(predictor, "runner", _CountingRunner(predictor.runner, forwards))
    with pytest.raises(FileNotFoundError, match="--clip-weights"):
        predictor([np.zeros((40, 50, 3), np.uint8)] * 3, texts="a dog")
    assert forwards == [] and downloads == []  # failed once, before the network ran
    get_clip_scorer.cache_clear()


class _CountingRunner:
    def __init__(self, runner: object, calls: list[int]) -> None:
        self.runner, self.calls = runner, calls

    def __getattr__(self, name: str) -> object:
        return getattr(self.runner, name)

    def __call__(self, x: torch.Tensor) -> object:
        self.calls.append(1)
        return self.runner(x)  # type: ignore[operator]


def test_prompt_top1_topk_threshold(scorer: ClipScorer) -> None:
    res, _ = synthetic_results(n=16, hw=(90, 120), seed=5)
    crops, keep = masked_crops(res.orig_image, res.masks, res.boxes)
    texts = ["a dog", "a cat"]
    sims = torch.cat([scorer.similarity([c], texts) for c in crops], dim=1)  # one by one
    out = prompt(res, texts=texts, clip_scorer=scorer)
    assert out.source_ids.tolist() == keep[sims.argmax(1)].tolist()  # one per text, text order
    assert out.prompt_ids.tolist() == [0, 1] and out.prompt_kinds == ("text", "text")
    torch.testing.assert_close(out.prompt_scores, sims.amax(1), atol=1e-5, rtol=0)

    top3 = prompt(res, texts=texts, clip_scorer=scorer, text_rule="topk", text_top_k=3)
    order = sims.argsort(dim=1, descending=True)[:, :3]
    assert top3.source_ids.tolist() == keep[order].flatten().tolist()
    assert top3.prompt_ids.tolist() == [0, 0, 0, 1, 1, 1]

    # Threshold halfway between two neighbouring scores, so no score sits on it: batched and
    # one-by-one scores differ by ~1e-8, which must not decide membership.
    ranked = sims[0].sort().values
    cut = float((ranked[len(ranked) // 2 - 1] + ranked[len(ranked) // 2]) / 2)
    above = prompt(
        res, texts="a dog", clip_scorer=scorer, text_rule="threshold", text_threshold=cut
    )
    assert sorted(above.source_ids.tolist()) == sorted(keep[sims[0] >= cut].tolist())
    assert bool((above.prompt_scores[:-1] >= above.prompt_scores[1:]).all())  # best first
    none = prompt(res, texts="a dog", clip_scorer=scorer, text_rule="threshold", text_threshold=2.0)
    assert len(none) == 0  # nothing above the threshold: empty, not a crash


def test_official_rule_matches_reference_selection() -> None:
    gen = torch.Generator().manual_seed(0)
    for trial in range(50):
        n = 3 + trial % 9
        keep = torch.randperm(n, generator=gen)[: max(1, n - trial % 4)].sort().values
        sims = torch.rand(len(keep), generator=gen) * 0.4
        filter_id = [i for i in range(n) if i not in keep.tolist()]
        index, prob = official_text_index(sims, keep, n)
        assert index == official_text_select(sims, filter_id)
        assert prob == pytest.approx(float((100 * sims).softmax(0).max()))


def test_official_rule_remap_bug_lands_on_a_filtered_mask() -> None:
    """Masks 1 and 2 filtered (area <= 100); the best crop is mask 3 (compressed index 1).

    The repo adds count(filter_id <= 1) = 1 to 1 and returns mask 2 (a filtered mask); top1
    maps through the kept list and returns mask 3.
    """
    keep = torch.tensor([0, 3, 4])
    sims = torch.tensor([[0.1, 0.3, 0.2]])
    official = select_texts(sims, keep, 5, "official")
    top1 = select_texts(sims, keep, 5, "top1")
    assert official.indices.tolist() == [2] == [official_text_select(sims[0], [1, 2])]
    assert top1.indices.tolist() == [3]


def test_select_texts_argument_errors() -> None:
    sims, keep = torch.rand(1, 3), torch.arange(3)
    with pytest.raises(ValueError, match="needs top_k >= 1"):
        select_texts(sims, keep, 3, "topk")
    with pytest.raises(ValueError, match="needs a finite threshold"):
        select_texts(sims, keep, 3, "threshold")
    with pytest.raises(ValueError, match="text rule must be"):
        select_texts(sims, keep, 3, "best")  # type: ignore[arg-type]
    assert (
        select_texts(torch.zeros(2, 0), torch.zeros(0, dtype=torch.int64), 4).indices.numel() == 0
    )


def test_text_prompt_edge_cases(scorer: ClipScorer) -> None:
    res, _ = synthetic_results(seed=3)
    # every mask too small to score: empty result, CLIP never runs
    assert len(prompt(res, texts="a dog", min_text_area=10**6)) == 0
    no_image = type(res)(res.masks, res.boxes, res.scores, res.class_ids, res.orig_hw)
    with pytest.raises(ValueError, match="orig_image is None"):
        prompt(no_image, texts="a dog", clip_scorer=scorer)
    with pytest.raises(ValueError, match="must not be empty"):
        prompt(res, texts="", clip_scorer=scorer)


def test_open_clip_missing_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "open_clip", None)  # import open_clip -> ImportError
    with pytest.raises(ImportError, match=r"pip install 'fastsam-core\[clip\]'"):
        ClipScorer()


def test_offline_error_says_what_to_download(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    def offline(*args: object, **kwargs: object) -> None:
        raise RuntimeError("Failed to download file (connection refused)")

    monkeypatch.setattr(open_clip, "create_model_and_transforms", offline)
    with pytest.raises(FileNotFoundError) as info:
        ClipScorer("ViT-B-32", "openai", cache_dir=tmp_path)
    message = str(info.value)
    url = open_clip.get_pretrained_cfg("ViT-B-32", "openai")["url"]
    assert url in message and "pretrained='/path/to/file'" in message and str(tmp_path) in message


def test_bad_model_names_and_weights(tmp_path) -> None:
    with pytest.raises(ValueError, match="unknown open_clip model 'ViT-Q-99'"):
        ClipScorer("ViT-Q-99")
    with pytest.raises(ValueError, match="has no pretrained tag 'nonsense'"):
        ClipScorer("ViT-B-32", "nonsense")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        ClipScorer("ViT-B-32", str(tmp_path / "missing.pt"))
    with pytest.raises(ValueError, match="batch_size must be"):
        ClipScorer.from_modules(torch.nn.Linear(1, 1), lambda x: x, lambda t: t, batch_size=0)


def test_local_checkpoint_file(tiny_name: str, scorer: ClipScorer, tmp_path) -> None:
    path = tmp_path / "tiny.pt"
    torch.save(scorer.model.state_dict(), path)
    loaded = ClipScorer(tiny_name, pretrained=path)
    torch.testing.assert_close(loaded.encode_texts(["a dog"]), scorer.encode_texts(["a dog"]))


def test_tensor_preprocessing_close_to_pil(scorer: ClipScorer) -> None:
    res, _ = synthetic_results(n=10, hw=(90, 120), seed=6)
    crops, _ = masked_crops(res.orig_image, res.masks, res.boxes)
    tensor_scorer = ClipScorer.from_modules(
        scorer.model, scorer.preprocess, scorer.tokenizer, preprocess_input="tensor"
    )
    pil = scorer.preprocess_crops(crops)
    tensor = tensor_scorer.preprocess_crops(crops)
    assert pil.shape == tensor.shape
    # bicubic antialias on tensors vs PIL's uint8 bicubic: a few grey levels (std ~0.27 -> /255/0.27)
    assert float((pil - tensor).abs().mean()) < 0.05


def test_features_on_model_device(scorer: ClipScorer) -> None:
    res, _ = synthetic_results(seed=1)
    crops, _ = masked_crops(res.orig_image, res.masks, res.boxes)
    assert scorer.device == torch.device("cpu")
    assert scorer.encode_images(crops).device == scorer.device
    assert scorer.encode_images([]).shape == (0, 32)


@pytest.mark.gpu
def test_cuda_scorer_matches_cpu(tiny_name: str, scorer: ClipScorer) -> None:
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    res, _ = synthetic_results(seed=1)
    crops, _ = masked_crops(res.orig_image, res.masks, res.boxes)
    gpu = ClipScorer.from_modules(
        clip_scorer_module.import_open_clip().create_model(tiny_name).to("cuda"),
        scorer.preprocess,
        scorer.tokenizer,
    )
    gpu.model.load_state_dict(scorer.model.state_dict())
    assert gpu.encode_images(crops).device.type == "cuda"
    torch.testing.assert_close(
        gpu.similarity(crops, ["a dog"]), scorer.similarity(crops, ["a dog"]), atol=1e-4, rtol=0
    )
