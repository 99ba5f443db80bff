"""BSDS boundary evaluation (fastsam_core.eval.boundaries, boundary_matching) on known answers."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from PIL import Image

from fastsam_core.data.datasets import load_dataset, rasterize_instances
from fastsam_core.data.synthetic import make_synthetic_dataset
from fastsam_core.eval.boundaries import (
    boundary_dataset,
    boundary_files,
    evaluate_boundaries,
    image_counts,
    mask_boundaries,
    read_boundary_png,
    summarize,
    thin,
    thresholds,
)
from fastsam_core.eval.boundary_matching import match_boundaries, match_sweep


def _vline(x: int, hw: tuple[int, int] = (100, 100), rows: slice = slice(10, 90)) -> np.ndarray:
    out = np.zeros(hw, dtype=bool)
    out[rows, x] = True
    return out


def _brute_force_matching(pred: np.ndarray, gt: np.ndarray, radius: float) -> int:
    """Maximum matching size by exhaustive search (tiny inputs only)."""
    p = list(zip(*np.nonzero(pred)))
    g = list(zip(*np.nonzero(gt)))
    near = [[j for j, b in enumerate(g) if np.hypot(a[0] - b[0], a[1] - b[1]) <= radius] for a in p]
    best = 0
    for choice in itertools.product(*[[-1, *n] for n in near]):
        used = [c for c in choice if c >= 0]
        if len(used) == len(set(used)):
            best = max(best, len(used))
    return best


def test_thresholds_are_bsds():
    ts = thresholds()
    assert ts.size == 99 and ts[0] == pytest.approx(0.01) and ts[-1] == pytest.approx(0.99)


def test_identical_maps_score_one():
    gt = _vline(30) | _vline(60)
    scores = evaluate_boundaries([gt.astype(np.float64)], [[gt]])
    assert scores.ods == pytest.approx(1.0)
    assert scores.ois == pytest.approx(1.0)
    assert scores.r50 == pytest.approx(1.0)


@pytest.mark.parametrize(("shift", "expected_f"), [(1, 1.0), (2, 0.0)])
def test_shift_within_and_beyond_tolerance(shift, expected_f):
    # 100 x 100: tolerance 0.0075 * 141.4 = 1.06 px, so a 1 px shift matches and 2 px does not
    gt = _vline(50)
    counts = image_counts(_vline(50 + shift).astype(np.float64), [gt])
    scores = summarize([counts])
    assert scores.ods == pytest.approx(expected_f)
    cnt_r, sum_r, cnt_p, sum_p = counts[0]
    assert (sum_r, sum_p) == (80, 80)
    assert cnt_r == cnt_p == (80 if expected_f else 0)


def test_diagonal_shift_uses_euclidean_distance():
    # a (1, 1) shift is 1.414 px: beyond 1.06 px, inside a larger tolerance
    gt = np.zeros((100, 100), dtype=bool)
    gt[10:90:10, 10:90:10] = True  # isolated dots 10 px apart
    pred = np.roll(gt, (1, 1), axis=(0, 1))
    assert summarize([image_counts(pred.astype(float), [gt])]).ods == 0.0
    assert summarize([image_counts(pred.astype(float), [gt], max_dist=0.011)]).ods == 1.0


def test_two_annotators():
    # pred equals annotator 1; annotator 2 drew another line: R = 80 / 160, P = 1
    a1, a2 = _vline(30), _vline(70)
    counts = image_counts(a1.astype(np.float64), [a1, a2])
    assert counts[0].tolist() == [80, 160, 80, 80]
    assert summarize([counts]).ods == pytest.approx(2 * 0.5 / 1.5)


def test_precision_counts_pixels_matched_by_any_annotator():
    # each annotator sees half of the prediction: every predicted pixel is matched by one
    pred = _vline(30) | _vline(70)
    counts = image_counts(pred.astype(np.float64), [_vline(30), _vline(70)])
    assert counts[0].tolist() == [160, 160, 160, 160]


def test_threshold_sweep_known_precision_recall():
    # line A on the ground truth (0.95), B far from it (0.65), C on the ground truth (0.35)
    gt = _vline(20) | _vline(80)
    edges = 0.95 * _vline(20) + 0.65 * _vline(50) + 0.35 * _vline(80)
    scores = summarize([image_counts(edges, [gt])])
    ts = scores.thresholds
    expected = [(ts <= 0.35, 1.0, 2 / 3), ((ts > 0.35) & (ts <= 0.65), 0.5, 0.5)]
    expected += [((ts > 0.65) & (ts <= 0.95), 0.5, 1.0), (ts > 0.95, 0.0, 0.0)]
    for where, recall, precision in expected:
        assert np.allclose(scores.recall[where], recall)
        assert np.allclose(scores.precision[where], precision)
    assert scores.ods == pytest.approx(0.8)  # 2 * 1 * (2/3) / (5/3); interpolation cannot beat it
    assert scores.ois == pytest.approx(0.8)
    # AP: curve (R, P) = (0, 0), (0.5, 1), (1, 2/3) at the highest threshold of each recall;
    # sum over r = 0..0.5 of 2r is 25.5, over r = 0.51..1 of 1 - (r - 0.5) * 2/3 is 41.5
    assert scores.ap == pytest.approx(0.67)
    assert scores.r50 == pytest.approx(0.5)


def test_ods_and_ois_differ_across_images():
    # image 1 is best at a high threshold, image 2 at a low one: OIS > ODS
    gt = _vline(20) | _vline(80)
    first = 0.9 * _vline(20) + 0.5 * _vline(50)  # B is wrong: best keeps A only (t > 0.5)
    second = 0.9 * _vline(20) + 0.2 * _vline(80)  # C is right: best keeps both (t <= 0.2)
    scores = summarize([image_counts(first, [gt]), image_counts(second, [gt])])
    # OIS: image 1 at t > 0.5 (80 of 160, P 1), image 2 at t <= 0.2 (160 of 160, P 1)
    assert scores.ois == pytest.approx(2 * 0.75 / 1.75)
    assert scores.ods < scores.ois


def test_uint8_maps_equal_float_maps():
    rng = np.random.default_rng(1)
    gt = _vline(40) | _vline(41)
    edges = (rng.random((100, 100)) * (rng.random((100, 100)) < 0.05) * 255).astype(np.uint8)
    edges[gt] = 200
    a = image_counts(edges, [gt])
    b = image_counts(edges.astype(np.float64) / 255, [gt])
    assert np.array_equal(a, b)


@pytest.mark.parametrize("seed", range(40))
def test_matching_is_maximum(seed):
    rng = np.random.default_rng(seed)
    h, w = (int(v) for v in rng.integers(3, 7, 2))
    pred = rng.random((h, w)) < 0.3
    pred[np.cumsum(pred).reshape(h, w) > 6] = False  # at most 6 pixels: brute force stays small
    gt = rng.random((h, w)) < 0.3
    radius = float(rng.uniform(0.5, 2.5))
    pred_matched, gt_matched = match_boundaries(pred, gt, radius)
    assert pred_matched.sum() == gt_matched.sum() == _brute_force_matching(pred, gt, radius)
    assert not (pred_matched & ~pred).any() and not (gt_matched & ~gt).any()


def test_matching_needs_augmenting_paths():
    # greedy nearest-first would pair p1 with g1 and leave p2 unmatched; the maximum is 2
    pred = np.zeros((1, 4), dtype=bool)
    gt = np.zeros((1, 4), dtype=bool)
    pred[0, [1, 2]] = True  # p1 at x=1, p2 at x=2
    gt[0, [0, 2]] = True  # g0 at x=0 (near p1 only), g1 at x=2 (near p1 and p2)
    pred_matched, gt_matched = match_boundaries(pred, gt, radius=1.0)
    assert pred_matched.sum() == gt_matched.sum() == 2


@pytest.mark.parametrize("seed", range(10))
def test_sweep_equals_matching_each_threshold(seed):
    rng = np.random.default_rng(seed)
    values = rng.random((24, 30)) * (rng.random((24, 30)) < 0.4)
    gt = rng.random((24, 30)) < 0.2
    ts = np.array([0.9, 0.1, 0.5, 0.3])
    pred_matched, gt_count = match_sweep(values, gt, ts, radius=2.2)
    for k, t in enumerate(ts):
        fresh, _ = match_boundaries(values >= t, gt, radius=2.2)
        assert gt_count[k] == pred_matched[k].sum() == fresh.sum()
        assert not (pred_matched[k] & (values < t)).any()


def test_thin_keeps_one_pixel_lines_and_thins_bars():
    line = _vline(50)
    assert np.array_equal(thin(line), line)  # a 1-pixel line (ends included) is already thin
    bar = np.zeros((30, 40), dtype=bool)
    bar[10:15, 5:35] = True  # 5 px thick
    thinned = thin(bar)
    assert not (thinned & ~bar).any()
    assert (thinned[:, 8:32].sum(0) == 1).all() and thinned[12, 8:32].all()  # the middle row


def test_thin_maps_option_scores_a_thick_prediction_as_bsds():
    gt = _vline(50)
    thick = (_vline(49) | _vline(50) | _vline(51)).astype(np.float64)
    as_is = summarize([image_counts(thick, [gt])])
    assert as_is.ods == pytest.approx(0.5)  # P = 80 / 240, R = 1
    thinned = summarize([image_counts(thick, [gt], thin_maps=True)])
    assert thinned.ods > 0.97  # thinned to the middle line (its ends may shorten by a pixel)


def test_mask_boundaries_ignore_image_border():
    masks = np.zeros((2, 20, 20), dtype=bool)
    masks[0, 5:10, 5:10] = True  # inside: a ring of 16 pixels
    masks[1, 0:5, 0:20] = True  # touches three image sides: only its bottom row is a boundary
    bounds = mask_boundaries(masks)
    assert bounds[5:10, 5:10].sum() == 16 and not bounds[6:9, 6:9].any()
    assert bounds[4].all() and not bounds[:4].any()
    assert bounds.sum() == 16 + 20


def test_instance_boundaries_score_one():
    masks = np.zeros((2, 64, 80), dtype=bool)
    masks[0, 10:30, 10:40] = True
    masks[1, 35:60, 45:75] = True
    gt = mask_boundaries(masks)
    scores = evaluate_boundaries([gt.astype(np.uint8) * 255], [[gt]])
    assert scores.ods == pytest.approx(1.0)


def test_boundary_pngs(tmp_path):
    gt = _vline(10, (32, 32), slice(0, 32))
    Image.fromarray(gt.astype(np.uint8) * 255).save(tmp_path / "img1_0.png")
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(tmp_path / "img1_1.png")
    (tmp_path / "img2").mkdir()
    Image.fromarray(gt.astype(np.uint8)).save(tmp_path / "img2" / "a.png")
    files = boundary_files(tmp_path, "img1")
    assert [f.name for f in files] == ["img1_0.png", "img1_1.png"]
    assert np.array_equal(read_boundary_png(files[0]), gt)
    assert [f.name for f in boundary_files(tmp_path, "img2")] == ["a.png"]
    assert boundary_files(tmp_path, "img3") == []


def test_boundary_dataset_from_a_bsds_folder(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "boundaries").mkdir()
    Image.fromarray(np.zeros((32, 40, 3), np.uint8)).save(tmp_path / "images" / "a.jpg")
    for k in range(2):
        gt = _vline(10 + k, (32, 40), slice(0, 32))
        Image.fromarray(gt.astype(np.uint8) * 255).save(tmp_path / "boundaries" / f"a_{k}.png")
    [(image, annotations)] = list(boundary_dataset(tmp_path))
    assert image.shape == (32, 40, 3) and len(annotations) == 2
    assert annotations[1][:, 11].all() and annotations[1].sum() == 32
    Image.fromarray(np.zeros((32, 40, 3), np.uint8)).save(tmp_path / "images" / "b.png")
    with pytest.raises(FileNotFoundError, match="no boundary PNG for b.png"):
        list(boundary_dataset(tmp_path))


def test_boundary_dataset_from_coco_instances(tmp_path):
    data = make_synthetic_dataset(tmp_path, num_images=2, image_size=(48, 64), seed=2)
    pairs = list(boundary_dataset(data))
    records = load_dataset(data, split="val").records
    assert len(pairs) == 2
    for (image, [gt]), record in zip(pairs, records):
        assert image.shape == (48, 64, 3)
        assert np.array_equal(gt, mask_boundaries(rasterize_instances(record)))


def test_errors():
    with pytest.raises(ValueError, match="ground truth is"):
        image_counts(np.zeros((4, 4)), [np.zeros((4, 5), bool)])
    with pytest.raises(ValueError, match="at least one ground-truth"):
        image_counts(np.zeros((4, 4)), [])
    with pytest.raises(ValueError, match=r"must lie in \[0, 1\]"):
        image_counts(np.full((4, 4), 2.0), [np.zeros((4, 4), bool)])
