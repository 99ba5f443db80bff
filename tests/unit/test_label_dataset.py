"""label.dataset: batches decoded by DataLoader workers, in order, errors in place."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from fastsam_core.io.images import load_image
from fastsam_core.label.dataset import decode_batches
from tests.support.photos import photo_paths


@pytest.mark.parametrize("workers", [0, 2])
def test_batches_in_order_with_errors_in_place(workers: int, tmp_path: Path) -> None:
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8 not a jpeg")
    items = [*photo_paths(), broken, tmp_path / "missing.jpg"]
    batches = [[5, 0], [4], [2, 3, 1]]  # any order: the loader follows the list
    got = list(decode_batches(items, batches, workers=workers))
    assert [[d.index for d in b] for b in got] == batches
    for batch in got:
        for d in batch:
            assert d.name == str(items[d.index])
            if d.index < 4:
                assert d.error is None and d.image is not None
                assert torch.equal(d.image.image, load_image(items[d.index]).image)
            else:
                assert d.image is None and d.error
    assert "cannot read image" in got[1][0].error
    assert "not found" in got[0][0].error


def test_no_batches_and_bad_arguments() -> None:
    assert list(decode_batches(photo_paths(), [], workers=2)) == []
    with pytest.raises(ValueError, match="--workers must be >= 0"):
        decode_batches(photo_paths(), [[0]], workers=-1)
