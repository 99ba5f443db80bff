"""fastsam_core.io.video: video files expand to frames; frames decode exactly as PyAV decodes them,
forward from the last read, in any order, in DataLoader workers too; one-line errors."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fastsam_core.io import VideoFrame, expand_sources, load_image, load_images
from fastsam_core.io import video as video_io
from fastsam_core.io.images import source_stem
from tests.support.videos import decode_all, make_video, source_frames

pytest.importorskip("av", reason="needs the `video` extra (PyAV)")

# .mp4 and .avi store the frame count in the header, .mkv does not (counted by demuxing);
# AVI seeks by packet order, which the reader detects and replaces by decoding from the start.
CONTAINERS = (".mp4", ".mkv", ".avi")


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("videos")
    return {ext: make_video(root / f"clip{ext}") for ext in CONTAINERS}


@pytest.fixture(autouse=True)
def fresh_reader():
    """Each test starts without a cached open video (the cache is per thread)."""
    video_io._close_reader()
    yield
    video_io._close_reader()


def _reader() -> video_io._Reader:
    reader = video_io._local.reader
    assert reader is not None
    return reader


@pytest.mark.parametrize("ext", CONTAINERS)
@pytest.mark.parametrize("stride", [1, 2, 5, 12, 13])
def test_expand_sources_keeps_every_nth_frame(videos, ext: str, stride: int) -> None:
    items = expand_sources(videos[ext], vid_stride=stride)
    assert items == [VideoFrame(videos[ext], i) for i in range(0, 12, stride)]
    assert video_io.count_frames(videos[ext]) == 12


def test_frame_names_and_sources(videos, tmp_path: Path) -> None:
    frame = VideoFrame(videos[".mp4"], 12)
    assert frame.stem == "clip_f000012" and str(frame) == f"{videos['.mp4']}#12"
    # a list mixes images and videos; a glob matches videos too; a directory lists images only
    still = tmp_path / "still.png"
    Image.new("RGB", (4, 3)).save(still)
    (tmp_path / "clip.mkv").write_bytes(videos[".mkv"].read_bytes())
    items = expand_sources([still, str(tmp_path / "clip.mkv")], vid_stride=6)
    assert items == [
        still,
        VideoFrame(tmp_path / "clip.mkv", 0),
        VideoFrame(tmp_path / "clip.mkv", 6),
    ]
    assert expand_sources(str(tmp_path / "*"), vid_stride=6) == items[1:] + [still]
    assert expand_sources(tmp_path) == [still]
    with pytest.raises(ValueError, match="vid_stride must be an integer >= 1, got 0"):
        expand_sources(still, vid_stride=0)


@pytest.mark.parametrize("ext", CONTAINERS)
def test_frames_equal_pyav_in_any_order(videos, ext: str) -> None:
    direct = decode_all(videos[ext])  # the reference: PyAV's own decode, in order
    assert len(direct) == 12
    items = expand_sources(videos[ext])
    for order in (range(12), [9, 2, 11, 0, 5, 5, 4, 10, 1], range(0, 12, 5)):
        for k in order:
            loaded = load_image(items[k])
            assert loaded.frame == k and loaded.path == videos[ext]
            assert loaded.name == str(videos[ext]) and source_stem(loaded) == f"clip_f{k:06d}"
            assert loaded.image.dtype == torch.uint8 and loaded.image.shape == (120, 160, 3)
            assert np.array_equal(loaded.image.numpy(), direct[k]), (ext, k)


def test_frame_index_is_the_source_frame(videos) -> None:
    """Each decoded frame is closest to the picture encoded at its index (B-frames reordered)."""
    sources = np.stack(source_frames()).astype(np.float32)  # (12, 120, 160, 3)
    for loaded in load_images(videos[".mp4"]):
        error = np.abs(sources - loaded.image.numpy().astype(np.float32)).mean(axis=(1, 2, 3))
        assert int(error.argmin()) == loaded.frame and error.min() < 16, error


@pytest.mark.parametrize("ext", CONTAINERS)
def test_sequential_reads_decode_forward_without_seeking(videos, ext: str) -> None:
    for k in range(0, 12, 2):  # stride 2: frames 1, 3, ... are decoded through, never sought
        load_image(VideoFrame(videos[ext], k))
    assert (_reader().decoded, _reader().seeks) == (11, 0)
    load_image(VideoFrame(videos[ext], 11))
    assert (_reader().decoded, _reader().seeks) == (12, 0)


@pytest.mark.parametrize("ext", [".mp4", ".mkv"])
def test_backward_read_seeks_to_the_keyframe(videos, ext: str) -> None:
    load_image(VideoFrame(videos[ext], 11))
    before = _reader().decoded
    load_image(VideoFrame(videos[ext], 7))  # keyframes 0, 3, 6, 9, 11: decode 6 and 7 only
    assert _reader().seeks == 1 and _reader().decoded - before == 2


def test_avi_seek_falls_back_to_decoding_from_the_start(videos) -> None:
    direct = decode_all(videos[".avi"])
    load_image(VideoFrame(videos[".avi"], 11))
    loaded = load_image(VideoFrame(videos[".avi"], 7))
    assert np.array_equal(loaded.image.numpy(), direct[7])
    assert not _reader().can_seek  # AVI landed past the keyframe asked for: never seeks again


class _Frames(torch.utils.data.Dataset):
    def __init__(self, items: list) -> None:
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> tuple[int, torch.Tensor]:
        loaded = load_image(self.items[i])
        return loaded.frame, loaded.image


def test_frames_load_in_dataloader_workers(videos) -> None:
    load_image(VideoFrame(videos[".mkv"], 3))  # the parent holds an open reader when workers fork
    direct = decode_all(videos[".mkv"])
    items = expand_sources(videos[".mkv"], vid_stride=2)
    loader = torch.utils.data.DataLoader(
        _Frames(items),
        batch_size=2,
        num_workers=2,
        timeout=60,  # a deadlock fails, not hangs
    )
    got = [(int(f), im) for frames, images in loader for f, im in zip(frames, images)]
    assert [f for f, _ in got] == list(range(0, 12, 2))
    for k, image in got:
        assert np.array_equal(image.numpy(), direct[k]), k


def test_bad_files_give_one_line_errors(videos, tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "notes.mp4").write_text("not a video")
    with pytest.raises(ValueError, match=r"cannot read video .*notes\.mp4: Invalid data"):
        expand_sources(tmp_path / "notes.mp4")
    missing = tmp_path / "missing.mkv"
    assert expand_sources(missing) == [missing]  # reported when loaded, like a missing image
    with pytest.raises(FileNotFoundError, match="video file not found: .*missing.mkv"):
        load_image(missing)
    with pytest.raises(FileNotFoundError, match="video file not found: .*missing.mkv"):
        load_image(VideoFrame(missing, 0))
    with pytest.raises(ValueError, match=r"clip\.mp4 is a video: pass it through expand_sources"):
        load_image(videos[".mp4"])
    with pytest.raises(
        ValueError, match=r"frame 12 of .*clip\.mkv not found: the video ends after 12"
    ):
        load_image(VideoFrame(videos[".mkv"], 12))
    monkeypatch.setitem(sys.modules, "av", None)  # PyAV not installed
    with pytest.raises(ImportError, match=r"pip install 'fastsam-core\[video\]'"):
        expand_sources(videos[".mp4"])


def test_truncated_video_fails_per_frame(videos, tmp_path: Path) -> None:
    """An AVI cut short still announces 12 frames: the missing ones fail one by one."""
    data = videos[".avi"].read_bytes()
    cut = tmp_path / "cut.avi"
    cut.write_bytes(data[: len(data) * 2 // 3])
    items = expand_sources(cut)
    assert len(items) == 12
    direct = decode_all(cut)
    assert 0 < len(direct) < 12
    for k in range(len(direct)):
        assert np.array_equal(load_image(items[k]).image.numpy(), direct[k])
    with pytest.raises(
        ValueError, match=rf"frame 11 of .*cut\.avi not found: .*after {len(direct)}"
    ):
        load_image(items[11])
