"""Evaluation: COCO mask AP, Boundary AP and breakdowns of predictions against ground truth
(``evaluate`` command), and the IoU matching of predictions to rendered instances."""
