"""Start-up hook, imported by ``yolo_focal_plugin_autopatch.pth`` in every interpreter.

Kept tiny on purpose: it only registers an import hook that patches yolov5 modules as they are
imported, so processes that never import yolov5 pay nothing (``benchmarks/bench_startup.py``
measures it; ``tests/test_startup.py`` checks that no heavy module is imported here).
``YOLO_FOCAL_DISABLE=1`` makes it inert.
"""
try:
    from yolo_focal_plugin.env import DISABLE as _DISABLE, flag as _flag

    _disabled = _flag(_DISABLE)
except BaseException:  # noqa: B036 - see below; a broken plugin counts as disabled
    _disabled = True

if not _disabled:
    try:
        from yolo_focal_plugin.integration.hook import register as _register

        _register()
    # BaseException, not Exception: a SystemExit or KeyboardInterrupt raised while site.py runs
    # this kills the interpreter before it starts ("Fatal Python error: init_import_site"), and
    # a broken or shadowed plugin must never cost the user their Python.
    except BaseException as _exc:  # noqa: B036
        import sys

        print(f"yolo-focal-plugin: start-up hook disabled, the interpreter starts without it: {_exc!r}",
              file=sys.stderr)
