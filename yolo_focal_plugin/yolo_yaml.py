"""The YAML files YOLOv5 is configured by, read the one way the plugin reads them.

- a **hyp file** (``--hyp``): a path, or the bare name of a hyp the plugin ships
  (``hyp.focal.yaml``; a local file of that name wins), holding a mapping of hyperparameters;
- a **dataset file** (``--data``): a mapping whose ``nc`` (or, as YOLOv5 allows, the length of
  ``names``) is the number of classes; ``names`` may be a list or a ``{index: name}`` mapping.

Pure Python plus PyYAML (imported on first use): no torch, no yolov5.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple, Union

__all__ = ["YamlFileError", "read_yaml_mapping", "find_hyp_file", "load_hyp", "dataset_classes"]

PathLike = Union[str, Path]


class YamlFileError(ValueError):
    """A configuration file is missing, not valid YAML, or not the mapping it should be."""


def read_yaml_mapping(path: PathLike, expected: str = "a mapping") -> Dict[str, Any]:
    """The mapping in the YAML file ``path`` (an empty file is ``{}``); :class:`YamlFileError` otherwise."""
    import yaml

    path = Path(path)
    try:
        with open(path, errors="ignore") as f:
            data = yaml.safe_load(f)
    except OSError as exc:
        raise YamlFileError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    except yaml.YAMLError as exc:
        raise YamlFileError(f"{path}: not valid YAML ({exc})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise YamlFileError(f"{path}: expected {expected}, found {type(data).__name__}")
    return data


def find_hyp_file(name: PathLike) -> Path:
    """``name`` as a file, else the plugin's bundled hyp of that bare name; :class:`YamlFileError` if neither."""
    from .hyp import resolve_hyp_path

    path = Path(name).expanduser()
    if path.is_file():
        return path
    bundled = resolve_hyp_path(str(name))
    if bundled is not None:
        return bundled
    raise YamlFileError(f"hyp file {str(name)!r} not found (a path, or a bundled name such as hyp.focal.yaml)")


def load_hyp(source: Union[PathLike, Mapping[str, Any]]) -> Dict[str, Any]:
    """The hyp as a dict: a mapping is returned as it is (the same object), a path or bare name is read."""
    if isinstance(source, dict):
        return source
    if isinstance(source, Mapping):
        return dict(source)
    return read_yaml_mapping(find_hyp_file(source), "a mapping of hyperparameters")


def dataset_classes(source: Union[PathLike, Mapping[str, Any]]) -> Tuple[Optional[int], Optional[List[str]]]:
    """``(nc, names)`` of a dataset file (or its already-read mapping); either is None when absent."""
    meta = source if isinstance(source, Mapping) else read_yaml_mapping(source, "a mapping with train/val/nc/names")
    names = meta.get("names")
    if isinstance(names, Mapping):
        names = [names[k] for k in sorted(names)]
    elif names is not None:
        names = list(names)
    nc = meta.get("nc")
    if nc is None and names is not None:
        nc = len(names)
    return (None if nc is None else int(nc)), names
