"""Decode ahead of the network: source items decoded in DataLoader worker processes, handed to
the run a batch at a time (issue 15 item 1).

The loader walks a fixed list of batches (source indices, `label.shard`); each worker decodes
whole batches and at most `workers * prefetch` batches wait decoded, so memory stays bounded
however long the source list. A file that cannot be decoded comes back as its error message
(a worker that raised would stop the whole loader).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
from torch.utils.data import DataLoader, Dataset

from fastsam_core.io.images import ImageSource, LoadedImage, load_image


@dataclass
class Decoded:
    """One source item after decoding: its source index and the image, or why it failed."""

    index: int
    name: str
    image: LoadedImage | None = None
    error: str | None = None


class SourceDataset(Dataset[Decoded]):
    """Map-style dataset over `io.images.expand_sources` items: item i -> `Decoded`.

    Args:
        items: expanded source items (paths, frame items, arrays), in source order.
        bgr: numpy arrays only: channels in BGR order (`load_image`).
    """

    def __init__(self, items: Sequence[ImageSource], bgr: bool = False) -> None:
        self.items = list(items)
        self.bgr = bgr

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> Decoded:
        item = self.items[index]
        name = str(item) if not isinstance(item, torch.Tensor) else f"image{index}"
        try:  # numpy, not a tensor: a tensor crosses to the main process by file-descriptor
            # passing, whose sharer thread prints a traceback when Ctrl-C tears the workers down
            image = load_image(item, bgr=self.bgr, index=index, array=True)
        except Exception as err:  # noqa: BLE001  reported for its file, the run goes on
            return Decoded(index, name, error=str(err))
        return Decoded(index, name, image=image)


def _keep_list(batch: list[Decoded]) -> list[Decoded]:
    """collate_fn: images of different sizes stay a list (the predictor letterboxes them)."""
    return batch


def _as_tensors(batch: list[Decoded]) -> list[Decoded]:
    """The decoded (H0, W0, 3) uint8 arrays as tensors (no copy), in the main process."""
    for decoded in batch:
        if decoded.image is not None:
            decoded.image.image = torch.from_numpy(decoded.image.image)
    return batch


def decode_batches(
    items: Sequence[ImageSource],
    batches: list[list[int]],
    workers: int,
    prefetch: int = 2,
    bgr: bool = False,
) -> Iterator[list[Decoded]]:
    """Yield the decoded images of each batch of source indices, in the order given.

    Args:
        items: every source item of the run.
        batches: source indices per batch (this rank's shard).
        workers: decoding processes; 0 decodes in this process, between forwards.
        prefetch: batches each worker decodes ahead (DataLoader `prefetch_factor`).
    """
    if workers < 0 or prefetch < 1:
        raise ValueError(f"--workers must be >= 0 and prefetch >= 1, got {workers}, {prefetch}")
    if not batches:
        return iter(())
    loader = DataLoader(
        SourceDataset(items, bgr=bgr),
        batch_sampler=batches,
        num_workers=workers,
        collate_fn=_keep_list,
        prefetch_factor=prefetch if workers > 0 else None,
        persistent_workers=False,
    )
    return (_as_tensors(batch) for batch in loader)
