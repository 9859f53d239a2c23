"""The plugin's environment variables, and what counts as "set" (one home for both).

Imported at interpreter start-up by ``_startup.py``: stdlib ``os`` only.
"""
from __future__ import annotations

import os

#: the start-up hook does nothing, ``yolo-focal train`` runs stock yolov5
DISABLE = "YOLO_FOCAL_DISABLE"
#: patch a yolov5 the plugin does not recognise (an unverified version, a clone out of shape)
FORCE = "YOLO_FOCAL_FORCE"

_TRUE = ("1", "true", "yes", "on")


def flag(name: str) -> bool:
    """True if the variable ``name`` is set to 1/true/yes/on (any case, surrounding blanks ignored)."""
    return os.environ.get(name, "").strip().lower() in _TRUE
