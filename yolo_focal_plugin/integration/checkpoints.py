"""Let yolov5's own checkpoints load under torch's ``weights_only=True`` default (torch >= 2.6).

Audit section 3: ``strip_optimizer`` at the end of training, ``yolov5 val --weights best.pt``,
``--resume`` and segment checkpoints fail with "Unsupported global". Issue #15: allow-listing the
classes themselves (``add_safe_globals([DetectionModel, ...])``) opened a hole, because torch's
restricted unpickler *calls* an allow-listed object with arguments taken from the file (REDUCE),
and ``DetectionModel(cfg)`` hands a dict from the file to ``parse_model``, which ``eval``s it.

How torch 2.x's ``_weights_only_unpickler`` uses the allow-list (a dict ``"module.name" -> object``):

- GLOBAL ``module\\nname\\n`` pushes the object registered under ``"module.name"``; both parts are
  read as newline-terminated lines, so a key containing a newline can never be reached by a file
  (protocol 2 has no other way to name a global: STACK_GLOBAL is refused outright);
- NEWOBJ calls ``cls.__new__(cls, *args)``, REDUCE calls ``func(*args)``, for any allow-listed value;
- BUILD requires ``type(inst)`` to be an allow-listed value.

Legitimate yolov5 checkpoints rebuild every module with NEWOBJ and an empty argument tuple, then
BUILD its ``__dict__``; none calls a module class with arguments. So under each class's real name
we register a *stand-in*: NEWOBJ with no arguments gives an uninitialised instance of the real
class, anything else (REDUCE, NEWOBJ with arguments) is refused. The real class is registered too,
so that BUILD accepts its instances, but under a key with a newline, which no file can spell.

numpy values in unstripped checkpoints (``best_fitness`` is an ndarray, optimizer ``lr`` values are
numpy scalars) are rebuilt through stand-ins that accept only plain numeric dtypes and bytes: a
numpy ``dtype`` takes arbitrary ``flags``, fields and sub-arrays from a BUILD state, so the state is
checked where the dtype is used (``scalar``, and the array's own BUILD).
"""
from __future__ import annotations

import builtins
import inspect
import math
import pathlib
import pickle
import sys
import types
from typing import Any, Callable, Dict, FrozenSet, List, Set, Tuple, Union

from .compat import _note
from .patching import LEDGER

Entry = Union[Any, Tuple[Any, str]]

_PREFIX = "yolo-focal-plugin: weights_only load refused"
_ADVICE = "Load a file with weights_only=False only if you trust where it came from."
# Suffix of the allow-list keys of the real classes: the newline makes them unreachable by GLOBAL.
_BUILD_ONLY = "\n(yolo-focal-plugin: BUILD of an instance only, unreachable by GLOBAL)"


def _refuse(what: str) -> pickle.UnpicklingError:
    # UnpicklingError, not RuntimeError: torch.load turns it into its own weights_only message.
    return pickle.UnpicklingError(f"{_PREFIX} {what}. {_ADVICE}")


def _qualified(obj: Any) -> str:
    return f"{obj.__module__}.{obj.__qualname__}"


# --------------------------------------------------------------------------- module classes


class _NewOnly(type):
    """Metaclass of the stand-ins: calling one (pickle REDUCE) is refused, whatever the arguments."""

    _yolo_focal_real: type
    _yolo_focal_attrs: FrozenSet[str]

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        raise _refuse(f"to call {_qualified(cls._yolo_focal_real)}(...) with arguments from the file "
                      "(REDUCE); a checkpoint rebuilds modules without calling them")

    def __repr__(cls) -> str:
        return f"<weights_only stand-in for {_qualified(cls._yolo_focal_real)}>"


# One stand-in per real class for the life of the process: registering the pip fork and a clone,
# or the same module twice, adds the same objects to torch's allow-list set, never two rivals
# under one name.
_STAND_INS: Dict[type, type] = {}


def _stand_in(real: type, attrs: FrozenSet[str] = frozenset()) -> type:
    """The object registered under ``real``'s name: NEWOBJ without arguments, nothing else."""
    if real in _STAND_INS:
        return _STAND_INS[real]

    def __new__(cls: type, *args: Any) -> Any:  # reached by NEWOBJ as cls.__new__(cls, *args)
        if args:
            raise _refuse(f"to create {_qualified(real)} with arguments from the file (NEWOBJ {args!r:.80})")
        return real.__new__(real)

    stand_in = _NewOnly(real.__name__, (), {"__new__": staticmethod(__new__), "__qualname__": real.__qualname__,
                                            "__module__": real.__module__, "_yolo_focal_real": real,
                                            "_yolo_focal_attrs": attrs})
    _STAND_INS[real] = stand_in
    return stand_in


def _module_classes(*modules: types.ModuleType) -> List[type]:
    import torch.nn as nn

    found = []
    for module in modules:
        for value in vars(module).values():
            if inspect.isclass(value) and issubclass(value, nn.Module) and value not in found:
                found.append(value)
    return found


def restricted_getattr(obj: Any, name: str, *default: Any) -> Any:
    """``builtins.getattr`` as a weights_only file may call it: only ``<Detect stand-in>.forward``.

    Segmentation models pickle ``self.detect = Detect.forward``, which pickle protocol 2 writes as
    ``getattr(Detect, "forward")``. Anything else (another name, another object, a chain through
    the returned function, a default) raises :class:`pickle.UnpicklingError`.
    """
    if not default and isinstance(obj, _NewOnly) and name in obj._yolo_focal_attrs:
        return builtins.getattr(obj._yolo_focal_real, name)
    raise _refuse(f"getattr({obj!r:.80}, {name!r:.80}{', ...' if default else ''}); only Detect.forward is allowed")


# --------------------------------------------------------------------------- numpy


def _numpy_functions() -> Tuple[Callable[..., Any], Callable[..., Any]]:
    try:
        from numpy._core.multiarray import _reconstruct, scalar
    except ImportError:  # numpy 1.x
        from numpy.core.multiarray import _reconstruct, scalar  # type: ignore[no-redef]
    return _reconstruct, scalar


_NUMERIC_KINDS = "biufc"  # bool, int, uint, float, complex: no object, void (fields), string or datetime


def _checked_dtype(dtype: Any, where: str) -> Any:
    """``dtype`` if it is exactly a plain numeric dtype; BUILD may have rewritten its flags or layout."""
    import numpy as np

    if not isinstance(dtype, np.dtype):
        raise _refuse(f"{where}: {type(dtype).__name__} where a numpy dtype was expected")
    plain = np.dtype(dtype.str) if dtype.kind in _NUMERIC_KINDS else None
    if (plain is None or dtype != plain or dtype.flags != plain.flags or dtype.hasobject
            or dtype.fields is not None or dtype.subdtype is not None or dtype.metadata is not None
            or dtype.itemsize != plain.itemsize or dtype.alignment != plain.alignment):
        raise _refuse(f"{where}: numpy dtype {dtype!r:.80} (flags {dtype.flags}) is not a plain numeric dtype")
    return dtype


def _numpy_entries() -> List[Entry]:
    import numpy as np

    real_reconstruct, real_scalar = _numpy_functions()

    class CheckedNdarray(np.ndarray):
        """An ndarray loaded from a weights_only file; its BUILD state was checked before numpy saw it.

        BUILD calls ``inst.__setstate__(state)`` on what ``_reconstruct`` returned, and numpy's own
        would accept an object-flagged dtype with raw bytes (pointers). Pickles back as a plain ndarray.
        """

        def __setstate__(self, state: Any) -> None:
            if not (isinstance(state, tuple) and len(state) == 5 and state[0] == 1):
                raise _refuse(f"ndarray state {state!r:.80}")
            _, shape, dtype, fortran, raw = state
            _checked_dtype(dtype, "ndarray")
            if not (isinstance(shape, tuple) and all(type(n) is int and n >= 0 for n in shape)
                    and type(fortran) is bool and isinstance(raw, bytes)
                    and len(raw) == math.prod(shape) * dtype.itemsize):
                raise _refuse(f"ndarray state {state!r:.80}")
            super().__setstate__(state)

        def __reduce__(self) -> Any:
            return self.view(np.ndarray).__reduce__()

    CheckedNdarray.__module__, CheckedNdarray.__qualname__ = __name__, "CheckedNdarray"

    class NdarrayName(metaclass=_NewOnly):
        """What GLOBAL ``numpy.ndarray`` gives: only ``_reconstruct`` accepts it."""

        _yolo_focal_real = np.ndarray
        _yolo_focal_attrs: FrozenSet[str] = frozenset()

        def __new__(cls, *args: Any) -> Any:
            raise _refuse(f"NEWOBJ of numpy.ndarray {args!r:.80}")

    def dtype(obj: Any, align: Any = False, copy: Any = True) -> Any:
        """numpy.dtype as pickled: ``dtype('f8', False, True)``; plain numeric dtypes only."""
        if not (isinstance(obj, str) and align is False and copy is True):
            raise _refuse(f"numpy.dtype{(obj, align, copy)!r:.80}")
        made = np.dtype(obj, False, True)  # a copy: BUILD must never touch numpy's shared float64 dtype
        _checked_dtype(made, "numpy.dtype")
        return made

    def _reconstruct(subtype: Any, shape: Any, code: Any) -> Any:
        """numpy's ndarray pickle prologue: ``_reconstruct(ndarray, (0,), b'b')``, nothing else."""
        if not (subtype is NdarrayName and shape == (0,) and code in (b"b", "b")):
            raise _refuse(f"numpy _reconstruct({subtype!r:.60}, {shape!r:.40}, {code!r:.20})")
        return real_reconstruct(CheckedNdarray, (0,), b"b")

    def scalar(dtype: Any, data: Any = None) -> Any:
        """numpy scalars as pickled: ``scalar(<numeric dtype>, <itemsize bytes>)``; no object scalars."""
        _checked_dtype(dtype, "numpy scalar")
        if not (isinstance(data, bytes) and len(data) == dtype.itemsize):
            raise _refuse(f"numpy scalar({dtype!r}, {data!r:.40}): data must be {dtype.itemsize} bytes")
        return real_scalar(dtype, data)

    entries: List[Entry] = [(dtype, "numpy.dtype"), (NdarrayName, "numpy.ndarray"), (CheckedNdarray, f"{__name__}.CheckedNdarray{_BUILD_ONLY}")]
    for module in ("numpy._core.multiarray", "numpy.core.multiarray"):  # written by numpy 2 / numpy 1
        entries += [(_reconstruct, f"{module}._reconstruct"), (scalar, f"{module}.scalar")]
    # BUILD of a dtype needs its DType class (numpy >= 1.25: one per type); never reachable by name.
    for code in "?bhilqBHILQefdgFDG":
        entries.append((type(np.dtype(code)), f"numpy dtype class {code}{_BUILD_ONLY}"))
    return entries


_NUMPY_ENTRIES: List[Entry] = []  # built once, so repeated registrations add the same objects


def _numpy_once() -> List[Entry]:
    if not _NUMPY_ENTRIES:
        _NUMPY_ENTRIES.extend(_numpy_entries())
    return _NUMPY_ENTRIES


def posix_path(*parts: Any) -> pathlib.PosixPath:
    """``pathlib.PosixPath`` as pickled (``opt.save_dir`` of classify/train.py): strings only."""
    if not all(isinstance(p, str) for p in parts):
        raise _refuse(f"pathlib.PosixPath{parts!r:.80}: only strings are allowed")
    return pathlib.PosixPath(*parts)


# --------------------------------------------------------------------------- registration


def allow_list_entries(yolo_module: types.ModuleType) -> List[Entry]:
    """What :func:`register_safe_globals` adds to torch's allow-list for ``yolo_module``.

    ``yolo_module`` is ``yolov5.models.yolo`` (pip fork) or ``models.yolo`` (a clone); its sibling
    ``common`` and ``experimental`` modules are taken from the same package. Every nn.Module class
    found there and in ``torch.nn.modules`` is registered as a (stand-in, real name) pair plus the
    real class under an unreachable key; numpy scalars/arrays, ``PosixPath`` and ``getattr`` get
    argument-checking stand-ins. Names torch already allow-lists by default are left to torch.
    """
    import torch.nn.modules as torch_modules
    from torch import _weights_only_unpickler

    package = yolo_module.__name__.rpartition(".")[0]
    siblings = [sys.modules[f"{package}.{name}"] for name in ("common", "experimental")
                if f"{package}.{name}" in sys.modules]
    torch_defaults = _weights_only_unpickler._get_allowed_globals()
    detect = getattr(yolo_module, "Detect", None)
    entries: List[Entry] = []
    for real in _module_classes(yolo_module, *siblings, torch_modules):
        name = _qualified(real)
        if name in torch_defaults:
            continue
        attrs = frozenset({"forward"}) if detect is not None and issubclass(real, detect) else frozenset()
        entries += [(_stand_in(real, attrs), name), (real, name + _BUILD_ONLY)]
    entries += _numpy_once()
    entries += [(restricted_getattr, "builtins.getattr"), (posix_path, "pathlib.PosixPath")]
    return entries


def register_safe_globals(yolo_module: types.ModuleType) -> None:
    """Allow-list what yolov5 checkpoints pickle, without letting a file call any of it with arguments.

    Called after a ``<pkg>.models.yolo`` module has executed (its ``common`` and ``experimental``
    siblings are loaded by then); safe to call for the pip fork and for clones in one process.
    The change is recorded in the LEDGER: its undo removes exactly the entries this call added.
    """
    import torch

    add = getattr(torch.serialization, "add_safe_globals", None)
    if add is None:  # torch < 2.4 has no weights_only default to worry about
        return
    entries = allow_list_entries(yolo_module)
    before: Set[Any] = set(torch.serialization.get_safe_globals())
    added = set(entries) - before
    add(entries)

    def undo() -> None:
        # Remove only what this call added, so entries registered later by others survive.
        keep = [e for e in torch.serialization.get_safe_globals() if e not in added]
        torch.serialization.clear_safe_globals()
        add(keep)

    LEDGER.add_undo(undo, f"torch.serialization safe globals ({yolo_module.__name__})")
    _note(f"checkpoints: {len(entries)} allow-list entries for weights_only loads of {yolo_module.__name__} "
          "checkpoints (module classes are rebuilt, never called)")
