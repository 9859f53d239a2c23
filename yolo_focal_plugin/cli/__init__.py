"""The ``yolo-focal`` command line: ``main`` dispatches to one module per subcommand.

``main.py`` holds the dispatcher (and the pass-through to yolov5's own CLI); ``patch.py`` is
``yolo-focal patch``. The other subcommands live with the code they drive (experiments, sweep).
"""
from .main import COMMANDS, YOLOV5_COMMANDS, build_parser, main

__all__ = ["main", "build_parser", "COMMANDS", "YOLOV5_COMMANDS"]
