"""SAM stability score (ops/stability.py) against a dense reference written from SAM's definition."""

from __future__ import annotations

import pytest
import torch

from fastsam_core.ops.stability import box_stability_scores, stability_score


def _dense_reference(
    protos: torch.Tensor, coeffs: torch.Tensor, boxes: torch.Tensor, t: float, o: float
) -> torch.Tensor:
    """Full-frame logits of every instance, cells outside each box excluded, then SAM's
    IoU(logits > t + o, logits > t - o) = |high| / |low| (high is inside low)."""
    _, hp, wp = protos.shape
    logits = torch.einsum("nk,khw->nhw", coeffs.double(), protos.double())  # (N, Hp, Wp)
    ys = torch.arange(hp, dtype=torch.float64)[None, :, None]  # cell rows
    xs = torch.arange(wp, dtype=torch.float64)[None, None, :]
    x0, y0, x1, y1 = (boxes.double() / 4).unbind(1)
    # cell c is in the box iff it overlaps [floor(x0), ceil(x1)) in cell units
    inside = (
        (xs >= x0.floor()[:, None, None]) & (xs < x1.ceil()[:, None, None])
        & (ys >= y0.floor()[:, None, None]) & (ys < y1.ceil()[:, None, None])
    )  # fmt: skip
    high = ((logits > t + o) & inside).flatten(1).sum(1)
    low = ((logits > t - o) & inside).flatten(1).sum(1)
    return torch.where(low > 0, high / low.clamp(min=1), 0.0).float()


@pytest.mark.parametrize("threshold, offset", [(0.0, 1.0), (0.5, 0.25)])
def test_box_stability_matches_the_dense_reference(threshold: float, offset: float) -> None:
    g = torch.Generator().manual_seed(0)
    k, hp, wp, n = 8, 40, 56, 30
    protos = torch.randn((k, hp, wp), generator=g)
    coeffs = torch.randn((n, k), generator=g)
    xy = torch.rand((n, 2), generator=g) * torch.tensor([wp * 4, hp * 4])
    wh = torch.rand((n, 2), generator=g) * 120
    boxes = torch.cat([xy, xy + wh], 1)  # input px, some past the frame
    boxes[0] = torch.tensor([13.0, 13.0, 13.0, 13.0])  # zero area: covers no cell -> 0.0
    got = box_stability_scores(protos, coeffs, boxes, threshold, offset)
    want = _dense_reference(protos, coeffs, boxes, threshold, offset)
    assert got.dtype == torch.float32 and got.shape == (n,)
    assert torch.allclose(got, want, atol=1e-6)
    assert got[0] == 0.0 and ((got >= 0) & (got <= 1)).all() and (got[1:] > 0).any()


def test_stability_score_definition() -> None:
    logits = torch.tensor([[[3.0, 0.5], [-0.5, -2.0]], [[-5.0, -5.0], [-5.0, -5.0]]])  # (2, 2, 2)
    # mask 0: above +1: {3.0}; above -1: {3.0, 0.5, -0.5} -> 1/3; mask 1: nothing -> 0
    assert stability_score(logits).tolist() == pytest.approx([1 / 3, 0.0])
    # offset 0.4: above 0.4 {3.0, 0.5}, above -0.4 {3.0, 0.5} -> 1; threshold 1: {3.0}/{3.0, 0.5}
    assert stability_score(logits, offset=0.4).tolist() == pytest.approx([1.0, 0.0])
    assert stability_score(logits, threshold=1.0).tolist() == pytest.approx([0.5, 0.0])
    with pytest.raises(ValueError, match=r"protos \(K, Hp, Wp\), coeffs \(N, K\)"):
        box_stability_scores(torch.zeros(4, 5, 5), torch.zeros(2, 3), torch.zeros(2, 4))


def test_pending_stability_is_computed_on_first_use_and_follows_rows():
    from fastsam_core.ops.stability import PendingStability, resolve_stability

    protos, coeffs = torch.randn(8, 20, 24), torch.randn(5, 8)
    boxes = torch.tensor(
        [[0, 0, 40, 40], [8, 4, 96, 80], [50, 20, 90, 70], [0, 0, 96, 80], [4, 4, 8, 8.0]]
    )
    pending = PendingStability(protos, coeffs, boxes)
    eager = box_stability_scores(protos, coeffs, boxes)
    assert len(pending) == 5 and torch.equal(resolve_stability(pending), eager)
    rows = torch.tensor([3, 1])
    assert torch.equal(pending[rows].compute(), eager[rows])
    from fastsam_core.compact_masks import CompactMasks
    from fastsam_core.results import Results

    res = Results(
        masks=CompactMasks.from_dense(torch.zeros(5, 80, 96, dtype=torch.bool)),
        boxes=torch.zeros(5, 4), scores=torch.ones(5), class_ids=torch.zeros(5),
        orig_hw=(80, 96), stability_scores=pending,
    )  # fmt: skip
    assert torch.equal(res[rows].stability(), eager[rows]) and torch.equal(res.stability(), eager)
