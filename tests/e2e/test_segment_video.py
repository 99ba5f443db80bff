"""`Predictor.stream(video, vid_stride=N)`: one result per kept frame, keyed by frame index, equal
to segmenting the decoded frame itself; a frame that cannot be decoded is an ImageError in its
place (issue #15 part 5). The video is made by the test (tests/support/videos.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from fastsam_core import Predictor
from fastsam_core.results import ImageError, Results
from tests.support.videos import decode_all, make_video

pytest.importorskip("av", reason="needs the `video` extra (PyAV)")
pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py

TINY = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "ul120_tiny_seg_r26.pt"


@pytest.fixture(scope="module")
def predictor() -> Predictor:
    return Predictor(TINY, device="cpu", imgsz=256, conf=0.05, fast=False)


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_video(tmp_path_factory.mktemp("video") / "clip.mp4")


def _same(a: Results, b: Results) -> None:
    assert len(a) == len(b) > 0
    torch.testing.assert_close(a.boxes, b.boxes, rtol=0, atol=0)
    torch.testing.assert_close(a.scores, b.scores, rtol=0, atol=0)
    assert torch.equal(a.masks.to_dense(), b.masks.to_dense())


@pytest.mark.parametrize("batch_size", [1, 4])
def test_stream_video_every_second_frame(predictor: Predictor, clip: Path, batch_size: int) -> None:
    frames = decode_all(clip)
    outputs = list(predictor.stream(clip, vid_stride=2, batch_size=batch_size))
    assert [r.frame for r in outputs] == [0, 2, 4, 6, 8, 10]
    # the decoded frames as RGB arrays, batched the same way (batching moves floats by ~1e-3)
    expected = predictor([frames[k] for k in range(0, 12, 2)], batch_size=batch_size)
    for result, alone in zip(outputs, expected, strict=True):
        assert isinstance(result, Results) and result.path == str(clip)
        assert torch.equal(result.orig_image, torch.from_numpy(frames[result.frame]))
        _same(result, alone)
    assert outputs[0][:2].frame == 0 and outputs[1].to("cpu").frame == 2  # kept by subsets


def test_stream_video_with_prompts_and_images(predictor: Predictor, clip: Path) -> None:
    """Frames mix with images in one source list; prompt rows keep the frame index."""
    still = decode_all(clip)[5]
    outputs = list(predictor.stream([still, clip], vid_stride=6, boxes=[[10, 10, 100, 90]]))
    assert [(r.path, r.frame) for r in outputs] == [
        ("image0", None),
        (str(clip), 0),
        (str(clip), 6),
    ]
    assert all(isinstance(r, Results) and len(r) == 1 for r in outputs)


def test_truncated_video_yields_errors_for_missing_frames(
    predictor: Predictor, tmp_path: Path
) -> None:
    full = make_video(tmp_path / "full.avi")  # AVI: the header keeps announcing 12 frames
    data = full.read_bytes()
    cut = tmp_path / "cut.avi"
    cut.write_bytes(data[: len(data) * 2 // 3])
    decodable = len(decode_all(cut))
    outputs = list(predictor.stream(cut, vid_stride=1))
    assert len(outputs) == 12 and 0 < decodable < 12
    assert all(isinstance(r, Results) for r in outputs[:decodable])
    errors = outputs[decodable:]
    assert all(isinstance(e, ImageError) for e in errors)
    assert [e.frame for e in errors] == list(range(decodable, 12))
    assert str(errors[-1]).startswith(f"{cut} frame 11: frame 11 of {cut} not found")


def test_bad_video_and_stride_fail_before_anything_runs(
    predictor: Predictor, tmp_path: Path
) -> None:
    (tmp_path / "notes.mkv").write_text("not a video")
    with pytest.raises(ValueError, match=r"cannot read video .*notes\.mkv"):
        predictor.stream(tmp_path / "notes.mkv")
    with pytest.raises(ValueError, match="vid_stride must be an integer >= 1, got 0"):
        predictor.stream(tmp_path / "notes.mkv", vid_stride=0)
