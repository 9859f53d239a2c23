#!/usr/bin/env python3
"""Regenerate (or, with --check, verify) patches/yolov5-<version>/ from the installed yolov5, or, with
--clone DIR --tag TAG --commit SHA, patches/clone-<tag>/ from a pristine clone of ultralytics/yolov5.

Same as `python -m yolo_focal_plugin.sourcepatch.generate`; the edits themselves are declared in
yolo_focal_plugin/sourcepatch/edits.py. Run with the project's venv: .venv/bin/python scripts/make_patches.py
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from yolo_focal_plugin.sourcepatch.generate import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
