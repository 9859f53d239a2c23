"""Experiments and reports on generated data: what the README's numbers come from.

- ``synth``: seeded, class-imbalanced synthetic datasets (no downloads);
- ``demo`` / ``demo_command``: BCE vs focal settings trained side by side (``yolo-focal demo``);
- ``evidence``: several seeds x settings x datasets, Welch tests (``yolo-focal demo --evidence``);
- ``compare``: side-by-side metrics and mAP curves of finished YOLOv5 runs;
- ``assign_stats``: how YOLOv5's assignment and the RetinaNet matcher label a dataset.

Nothing here is imported by the integration or by the losses.
"""
