"""Evaluation: COCO box and mask AP/AR (pycocotools, the `eval` extra)."""
