"""Boundary detection scores on the BSDS500 protocol: ODS, OIS, AP, R50 (issue #16 part 2).

Protocol (Arbelaez et al., TPAMI 2011, the BSDS500 benchmark code; AP/R50 as in Dollar's
structured-edge toolbox `edgesEvalDir`):

* an edge map in [0, 1] is binarised at each threshold t of `thresholds(99)` = 0.01 .. 0.99
  (pixel is an edge iff value >= t);
* each binary map is matched to each human annotation one to one, a predicted pixel and a ground
  truth pixel being matchable when their distance is <= 0.0075 x the image diagonal;
* counts per threshold: `sum_r` = ground-truth pixels over all annotators, `cnt_r` = those
  matched, `sum_p` = predicted pixels, `cnt_p` = predicted pixels matched to ANY annotator;
* ODS: F of the counts summed over the data set, best threshold with BSDS's linear
  interpolation between neighbouring thresholds; OIS: counts of each image at its own best
  threshold index (BSDS `collect_eval_bdry`: the last maximum), summed, then F; AP: precision
  interpolated at recall 0, 0.01, .., 1 (points outside the curve dropped), summed / 100;
  R50: recall at precision 0.5 (at the lowest precision if the curve stays above 0.5; 0 if it
  never reaches 0.5, where `edgesEvalDir` returns NaN). Where several thresholds share a recall
  (AP) or precision (R50), the highest threshold's point counts (MATLAB's legacy `unique`).

Matching (`boundary_matching`): a maximum-cardinality one-to-one matching on the exact graph of
pixel pairs within tolerance, which gives the counts of BSDS's min-cost assignment (see there).
BSDS thins each binarised map (`bwmorph(..., 'thin', inf)`); `thin_maps=True` does the same
(`thin`), the default (False) takes the map as is: thin maps, as `fastsam_core.tasks.edges`
makes with edge NMS, then score as under BSDS, and a ground truth passed as the prediction scores
F = 1 even where it is thicker than one pixel.

Ground truth: BSDS-style boundary PNGs (one per annotator, nonzero = boundary; convert the
`.mat` files to PNG once) or the boundaries of COCO / YOLO-seg instance masks (one annotator).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fastsam_core.eval.boundary_matching import match_boundaries, match_sweep

MAX_DIST = 0.0075  # BSDS tolerance, as a fraction of the image diagonal
NUM_THRESHOLDS = 99  # BSDS nthresh


def thresholds(count: int = NUM_THRESHOLDS) -> np.ndarray:
    """BSDS thresholds: (count,) float64 `linspace(1/(count+1), 1-1/(count+1), count)`."""
    if count < 1:
        raise ValueError(f"threshold count must be >= 1, got {count}")
    return np.linspace(1 / (count + 1), 1 - 1 / (count + 1), count)


# ---------------------------------------------------------------------------------- counts
def _as_probability(edges: np.ndarray) -> np.ndarray:
    edges = np.asarray(edges)
    if edges.ndim != 2:
        raise ValueError(f"edge map must be (H, W), got shape {edges.shape}")
    if edges.dtype == np.uint8:
        return edges.astype(np.float64) / 255.0
    if edges.dtype == bool:
        return edges.astype(np.float64)
    if not np.issubdtype(edges.dtype, np.floating):
        raise ValueError(f"edge map must be uint8 [0, 255] or float [0, 1], got {edges.dtype}")
    if edges.size and (np.nanmin(edges) < 0 or np.nanmax(edges) > 1):
        raise ValueError(
            f"float edge map must lie in [0, 1], got [{edges.min():.3g}, {edges.max():.3g}]"
        )
    return edges.astype(np.float64)


def _thin_luts() -> tuple[np.ndarray, np.ndarray]:
    """Deletable 3x3 neighbourhoods of the two sub-iterations of Lam, Lee & Suen (1992) p. 879
    (the algorithm MATLAB's `bwmorph(bw, 'thin', Inf)` cites). Bit i of a code is neighbour
    x_{i+1}: E, NE, N, NW, W, SW, S, SE."""
    bits = (np.arange(256)[:, None] >> np.arange(8)[None]) & 1  # (256, 8)
    x = bits.astype(bool).T  # x[0] = x1 (E) .. x[7] = x8 (SE), each (256,)
    crossings = sum((~x[i]) & (x[i + 1] | x[(i + 2) % 8]) for i in (0, 2, 4, 6))
    n1 = sum(x[k] | x[k - 1] for k in (1, 3, 5, 7))
    n2 = sum(x[k] | x[(k + 1) % 8] for k in (1, 3, 5, 7))
    g12 = (crossings == 1) & (np.minimum(n1, n2) >= 2) & (np.minimum(n1, n2) <= 3)
    g3 = ~((x[1] | x[2] | ~x[7]) & x[0])
    g3p = ~((x[5] | x[6] | ~x[3]) & x[4])
    return g12 & g3, g12 & g3p


_THIN_LUTS = _thin_luts()
_NEIGHBOURS = ((0, 1), (-1, 1), (-1, 0), (-1, -1), (0, -1), (1, -1), (1, 0), (1, 1))  # x1..x8


def thin(mask: np.ndarray) -> np.ndarray:
    """Thin a binary map to 1-pixel lines, as BSDS does to each binarised edge map.

    Args:
        mask: (H, W) bool.

    Returns:
        (H, W) bool, a subset of `mask`.
    """
    out = np.asarray(mask, dtype=bool).copy()
    h, w = out.shape
    while True:
        changed = False
        for lut in _THIN_LUTS:
            padded = np.pad(out, 1)  # (H+2, W+2), outside is background
            code = np.zeros((h, w), dtype=np.int64)
            for bit, (dy, dx) in enumerate(_NEIGHBOURS):
                code |= padded[1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w].astype(np.int64) << bit
            delete = out & lut[code]
            if delete.any():
                out &= ~delete
                changed = True
        if not changed:
            return out


def image_counts(
    edges: np.ndarray,
    annotations: Sequence[np.ndarray],
    thresholds_: np.ndarray | None = None,
    max_dist: float = MAX_DIST,
    thin_maps: bool = False,
) -> np.ndarray:
    """BSDS counts of one image at every threshold.

    Args:
        edges: (H, W) edge strength, uint8 [0, 255] or float [0, 1].
        annotations: one (H, W) bool boundary map per human annotator (at least one).
        thresholds_: (T,) thresholds; default `thresholds()`.
        max_dist: matching tolerance as a fraction of the image diagonal.
        thin_maps: thin each binarised map (`thin`) as BSDS does, for maps that are not thin
            already (slower: every threshold is matched from scratch).

    Returns:
        (T, 4) int64 columns cnt_r, sum_r, cnt_p, sum_p.
    """
    prob = _as_probability(edges)
    ts = thresholds() if thresholds_ is None else np.asarray(thresholds_, dtype=np.float64)
    if len(annotations) == 0:
        raise ValueError("an image needs at least one ground-truth boundary map")
    gts = [np.asarray(gt, dtype=bool) for gt in annotations]
    for gt in gts:
        if gt.shape != prob.shape:
            raise ValueError(f"ground truth is {gt.shape} but the edge map is {prob.shape}")
    radius = max_dist * float(np.hypot(*prob.shape))
    counts = np.zeros((ts.size, 4), dtype=np.int64)
    counts[:, 1] = sum(int(gt.sum()) for gt in gts)
    if thin_maps:
        for k, t in enumerate(ts.tolist()):
            pred = thin(prob >= t)
            any_matched = np.zeros_like(pred)
            for gt in gts:
                pred_matched, gt_matched = match_boundaries(pred, gt, radius)
                any_matched |= pred_matched
                counts[k, 0] += int(gt_matched.sum())
            counts[k, 2:] = int(any_matched.sum()), int(pred.sum())
        return counts
    any_matched_t = np.zeros((ts.size, *prob.shape), dtype=bool)  # (T, H, W)
    for gt in gts:
        pred_matched_t, gt_count = match_sweep(prob, gt, ts, radius)  # pixels only get added
        any_matched_t |= pred_matched_t
        counts[:, 0] += gt_count
    counts[:, 2] = any_matched_t.reshape(ts.size, -1).sum(1)
    counts[:, 3] = (prob[None] >= ts[:, None, None]).reshape(ts.size, -1).sum(1)
    return counts


# ---------------------------------------------------------------------------------- scores
def _rpf(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Recall, precision, F from (..., 4) counts (BSDS: 0 where a denominator is 0)."""
    cnt_r, sum_r, cnt_p, sum_p = (counts[..., i].astype(np.float64) for i in range(4))
    r = cnt_r / np.where(sum_r == 0, 1, sum_r)
    p = cnt_p / np.where(sum_p == 0, 1, sum_p)
    return r, p, _f(r, p)


def _f(r: np.ndarray, p: np.ndarray) -> np.ndarray:
    s = p + r
    return 2 * p * r / np.where(s == 0, 1, s)


def _best_interpolated(ts: np.ndarray, r: np.ndarray, p: np.ndarray) -> tuple[float, ...]:
    """BSDS `maxF`: best (t, R, P, F) on the segments between neighbouring thresholds."""
    best = (float(ts[0]), float(r[0]), float(p[0]), float(_f(r[:1], p[:1])[0]))
    d = np.linspace(0, 1, 100)  # (100,) BSDS linspace(0, 1)
    for i in range(1, ts.size):
        ti = ts[i] * d + ts[i - 1] * (1 - d)
        ri = r[i] * d + r[i - 1] * (1 - d)
        pi = p[i] * d + p[i - 1] * (1 - d)
        fi = _f(ri, pi)
        j = int(np.argmax(fi))
        if fi[j] > best[3]:
            best = (float(ti[j]), float(ri[j]), float(pi[j]), float(fi[j]))
    return best


@dataclass
class BoundaryScores:
    """Data-set scores; `recall`/`precision` are the (T,) curve of the summed counts."""

    ods: float
    ods_threshold: float
    ois: float
    ap: float
    r50: float
    thresholds: np.ndarray = field(repr=False)
    recall: np.ndarray = field(repr=False)
    precision: np.ndarray = field(repr=False)

    def as_dict(self) -> dict[str, float]:
        return {
            "ODS": self.ods,
            "OIS": self.ois,
            "AP": self.ap,
            "R50": self.r50,
            "ODS_threshold": self.ods_threshold,
        }


def summarize(
    per_image: Sequence[np.ndarray], thresholds_: np.ndarray | None = None
) -> BoundaryScores:
    """ODS, OIS, AP and R50 from each image's (T, 4) `image_counts`."""
    ts = thresholds() if thresholds_ is None else np.asarray(thresholds_, dtype=np.float64)
    if not per_image:
        raise ValueError("no images to score")
    stack = np.stack([np.asarray(c, dtype=np.int64) for c in per_image])  # (I, T, 4)
    if stack.shape[1:] != (ts.size, 4):
        raise ValueError(f"counts must be (T={ts.size}, 4) per image, got {stack.shape[1:]}")
    r, p, _ = _rpf(stack.sum(0))  # (T,) each
    ods_t, _, _, ods = _best_interpolated(ts, r, p)
    _, _, f_img = _rpf(stack)  # (I, T)
    last_best = ts.size - 1 - np.argmax(f_img[:, ::-1], axis=1)  # (I,) BSDS: the last maximum
    _, _, ois = _rpf(stack[np.arange(stack.shape[0]), last_best].sum(0))
    return BoundaryScores(
        ods=float(ods),
        ods_threshold=float(ods_t),
        ois=float(ois),
        ap=_average_precision(r, p),
        r50=_recall_at_half_precision(r, p),
        thresholds=ts,
        recall=r,
        precision=p,
    )


def _unique_last(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted unique values and the LAST index of each (MATLAB's legacy `unique`, which the BSDS
    code was written for: at a repeated value the highest threshold's point counts)."""
    values, first_in_reversed = np.unique(x[::-1], return_index=True)
    return values, x.size - 1 - first_in_reversed


def _average_precision(r: np.ndarray, p: np.ndarray) -> float:
    """`edgesEvalDir`: P interpolated at R = 0, 0.01, .., 1 inside the curve, summed / 100."""
    ru, last = _unique_last(r)
    if ru.size < 2:
        return 0.0  # BSDS and edgesEvalDir: a one-point curve has no area
    grid = np.linspace(0, 1, 101)
    inside = (grid >= ru[0]) & (grid <= ru[-1])
    return float(np.interp(grid[inside], ru, p[last]).sum() / 100)


def _recall_at_half_precision(r: np.ndarray, p: np.ndarray) -> float:
    """`edgesEvalDir`: R interpolated at P = max(min P, 0.5); 0 when P never reaches 0.5."""
    pu, last = _unique_last(p)
    target = max(float(pu[0]), 0.5)
    if target > pu[-1]:
        return 0.0
    return float(np.interp(target, pu, r[last]))


# ---------------------------------------------------------------------------------- ground truth
def mask_boundaries(masks: np.ndarray) -> np.ndarray:
    """Union of the inner boundaries of instance masks (the image border is not a boundary).

    Args:
        masks: (N, H, W) bool.

    Returns:
        (H, W) bool: pixels of a mask with a 4-neighbour outside that mask.
    """
    masks = np.asarray(masks, dtype=bool)
    if masks.ndim != 3:
        raise ValueError(f"masks must be (N, H, W), got shape {masks.shape}")
    padded = np.pad(masks, ((0, 0), (1, 1), (1, 1)), mode="edge")  # (N, H+2, W+2)
    eroded = (
        padded[:, :-2, 1:-1] & padded[:, 2:, 1:-1] & padded[:, 1:-1, :-2] & padded[:, 1:-1, 2:]
    )  # (N, H, W) all four neighbours inside
    return (masks & ~eroded).any(0)


def read_boundary_png(path: str | Path) -> np.ndarray:
    """(H, W) bool boundary map from a PNG (nonzero = boundary, any channel)."""
    from PIL import Image

    with Image.open(path) as image:
        array = np.asarray(image.convert("L"))
    return array > 0


def boundary_files(gt_dir: str | Path, stem: str) -> list[Path]:
    """An image's annotator PNGs: `<stem>.png`, `<stem>_*.png` or every PNG in `<stem>/`."""
    gt_dir = Path(gt_dir)
    files = sorted(gt_dir.glob(f"{stem}_*.png")) + sorted((gt_dir / stem).glob("*.png"))
    single = gt_dir / f"{stem}.png"
    return ([single] if single.is_file() else []) + files


def evaluate_boundaries(
    edge_maps: Iterable[np.ndarray],
    annotations: Iterable[Sequence[np.ndarray]],
    num_thresholds: int = NUM_THRESHOLDS,
    max_dist: float = MAX_DIST,
    thin_maps: bool = False,
) -> BoundaryScores:
    """BSDS scores of edge maps against their annotations (one list of maps per image)."""
    ts = thresholds(num_thresholds)
    counts = [
        image_counts(e, a, ts, max_dist, thin_maps)
        for e, a in zip(edge_maps, annotations, strict=True)
    ]
    return summarize(counts, ts)


def boundary_dataset(
    data: str | Path, split: str = "val"
) -> Iterator[tuple[np.ndarray, list[np.ndarray]]]:
    """Images and their boundary annotations, one image at a time.

    Args:
        data: a COCO `.json` / YOLO-seg `.yaml` (one annotator: the boundaries of the instance
            masks, `mask_boundaries`), or a BSDS-style folder holding `images/` and
            `boundaries/` (annotator PNGs as `boundary_files` finds them).
        split: the YAML entry to read.

    Yields:
        ((H0, W0, 3) uint8 RGB image, [(H0, W0) bool boundary map per annotator]).
    """
    path = Path(data)
    if path.is_dir():
        from fastsam_core.io.images import list_image_files, load_image

        images, gt_dir = path / "images", path / "boundaries"
        if not images.is_dir() or not gt_dir.is_dir():
            raise FileNotFoundError(
                f"{path}: a boundary data set folder needs images/ and boundaries/ sub-folders"
            )
        for image_path in list_image_files(images):
            files = boundary_files(gt_dir, image_path.stem)
            if not files:
                raise FileNotFoundError(
                    f"no boundary PNG for {image_path.name} in {gt_dir} (expected "
                    f"{image_path.stem}.png, {image_path.stem}_*.png or {image_path.stem}/*.png)"
                )
            yield load_image(image_path).image.numpy(), [read_boundary_png(f) for f in files]
        return
    from fastsam_core.data.datasets import load_dataset, load_rgb, rasterize_instances

    for record in load_dataset(path, split=split).records:
        yield load_rgb(record), [mask_boundaries(rasterize_instances(record))]
