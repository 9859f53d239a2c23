"""Start-up hook, imported by ``yolo_focal_plugin_autopatch.pth`` in every interpreter.

Kept tiny on purpose: it only registers an import hook that patches yolov5 modules as they are
imported, so processes that never import yolov5 pay nothing. ``YOLO_FOCAL_DISABLE=1`` makes it
inert.
"""
import os

if os.environ.get("YOLO_FOCAL_DISABLE", "").strip().lower() not in ("1", "true", "yes", "on"):
    try:
        from yolo_focal_plugin.integration.hook import register as _register

        _register()
    except Exception as _exc:  # a broken plugin must never break the interpreter start-up
        import sys

        print(f"yolo-focal-plugin: start-up hook disabled: {_exc!r}", file=sys.stderr)
