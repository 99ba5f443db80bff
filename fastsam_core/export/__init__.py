"""Exports of Results: COCO RLE, polygons, overlays (issue #3 part 4)."""
