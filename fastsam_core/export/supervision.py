"""`Results.to_supervision()`: a `supervision.Detections` so supervision's annotators and trackers
work on our results (optional dependency: `pip install supervision`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fastsam_core.results import Results


def to_detections(results: Results) -> Any:
    """Detections(xyxy (N, 4) float32 detector boxes, mask (N, H0, W0) bool, confidence,
    class_id, data["class_name"]); masks are densified in the original frame."""
    try:
        import supervision as sv
    except ImportError as err:
        raise ImportError(
            "Results.to_supervision() needs supervision: pip install supervision"
        ) from err
    import numpy as np

    class_ids = results.class_ids.cpu().numpy().astype(int)
    names = results.names
    return sv.Detections(
        xyxy=results.boxes.cpu().numpy().astype(np.float32).reshape(-1, 4),
        mask=results.masks_original().to_dense().cpu().numpy(),
        confidence=results.scores.cpu().numpy().astype(np.float32),
        class_id=class_ids,
        data={
            "class_name": np.array(
                [names[c] if 0 <= c < len(names) else str(c) for c in class_ids], dtype=object
            )
        },
    )
