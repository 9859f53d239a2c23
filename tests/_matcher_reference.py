"""Seeded random matching problems and the frozen outputs of the pre-#13 matcher (commit 7182b89).

``tests/data/matcher_reference.pt`` holds, for every problem, its inputs and the outputs the
matcher gave at 7182b89 (or the start of the ``ValueError`` it raised). It was written once,
before the #13 refactor, with::

    git worktree add /tmp/m7182 7182b89 && cp tests/_matcher_reference.py /tmp/m7182/tests/
    cd /tmp/m7182 && PYTHONPATH=. python tests/_matcher_reference.py /path/to/tests/data/matcher_reference.pt

Inputs are stored (not regenerated) so the comparison does not depend on torch's random
streams staying the same across versions. Outputs are stored sparsely: the flat positions
where ``labels != 0`` or ``matches != -1``, with their values.
"""
from __future__ import annotations

import math
import sys
from typing import Dict, List

import torch

from yolo_focal_plugin.retina import RetinaMatcher, anchors_for_image, grid_anchor_boxes

_YOLO_WH = [[(10, 13), (16, 30), (33, 23)], [(30, 61), (62, 45), (59, 119)], [(116, 90), (156, 198), (373, 326)]]
# (pos_iou, neg_iou, allow_low_quality, keyword arguments)
_CONFIGS = [
    (0.5, 0.4, True, {}),
    (0.5, 0.4, True, {"drop_degenerate": True}),
    (0.6, 0.3, True, {"drop_degenerate": True}),
    (0.5, 0.5, True, {"drop_degenerate": True, "tie_tol": 0.0}),
    (0.5, 0.4, False, {"drop_degenerate": True}),
    (0.5, 0.4, True, {"drop_degenerate": True, "max_iou_entries": 1024}),
    (0.5, 0.4, True, {"drop_degenerate": True, "candidate_search": "dense", "max_iou_entries": 4096}),
    (0.7, 0.3, True, {"drop_degenerate": True, "tie_tol": 1e-3}),
]


def _boxes(n: int, size: float, lo: float, hi: float, g: torch.Generator) -> torch.Tensor:
    s = torch.exp(torch.empty(n).uniform_(math.log(lo), math.log(hi), generator=g))
    ar = torch.exp(torch.empty(n).uniform_(-1.1, 1.1, generator=g))
    w, h = s * ar.sqrt(), s / ar.sqrt()
    cx, cy = torch.rand(n, generator=g) * size, torch.rand(n, generator=g) * size
    return torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], 1).clamp(0, size)


def _scene(g: torch.Generator, size: int) -> torch.Tensor:
    """Random boxes plus near-duplicates, exact duplicates and (sometimes) a degenerate box."""
    n = int(torch.randint(0, 60, (1,), generator=g))
    base = _boxes(n, size, 2, size * 1.2, g)
    k = n // 3
    near = base[:k] + torch.rand(k, 4, generator=g) * 0.5
    parts = [base, near, base[: n // 8]]
    if float(torch.rand(1, generator=g)) < 0.3:
        parts.append(torch.tensor([[5.0, 5.0, 5.0, 9.0], [size + 50.0, size + 50, size + 60, size + 60]]))
    b = torch.cat(parts)
    return b[torch.randperm(b.shape[0], generator=g)]


def problems() -> List[Dict]:
    """The seeded problems: boxes on grid / YOLO / irregular / tiny anchor sets, and quality matrices."""
    out = []
    for seed in range(40):
        g = torch.Generator().manual_seed(seed)
        size = [96, 128, 160][seed % 3]
        kind = ["retina", "yolo", "irregular", "tiny"][seed % 4]
        # grid anchors are stored as (kind, size) and rebuilt: they are deterministic arithmetic
        extra = torch.zeros(0, 4)
        if kind == "irregular":
            extra = _boxes(300, size, 4, 80, g)
        elif kind == "tiny":  # few anchors, many GTs: rounds and the last resort on the box path
            extra = _boxes(int(torch.randint(2, 12, (1,), generator=g)), 40, 6, 30, g)
            extra = extra[((extra[:, 2:] - extra[:, :2]) > 0.5).all(1)]
        if kind == "tiny":
            gts = [_boxes(int(torch.randint(1, 14, (1,), generator=g)), 40, 4, 30, g)]
        else:
            gts = [_scene(g, size) for _ in range(int(torch.randint(1, 4, (1,), generator=g)))]
        out.append({"name": f"boxes-{kind}-{seed}", "config": seed % len(_CONFIGS), "kind": kind, "size": size,
                    "extra": extra, "gts": gts})
    for seed in range(40):
        g = torch.Generator().manual_seed(1000 + seed)
        m, a = int(torch.randint(1, 9, (1,), generator=g)), int(torch.randint(1, 11, (1,), generator=g))
        # IoUs on a 0.05 grid, half of them zero: many exact ties and shared best anchors
        q = (torch.randint(0, 20, (m, a), generator=g).float() * 0.05) * (torch.rand(m, a, generator=g) < 0.5)
        out.append({"name": f"quality-{seed}", "config": seed % len(_CONFIGS), "quality": q})
    return out


def anchors_of(problem: Dict) -> torch.Tensor:
    size, kind = problem["size"], problem["kind"]
    if kind == "retina":
        return anchors_for_image(size, size)
    if kind == "yolo":
        return grid_anchor_boxes(size, size, _YOLO_WH, (8, 16, 32))
    if kind == "irregular":
        return torch.cat([problem["extra"], anchors_for_image(size, size)])
    return problem["extra"]


def matcher_for(config: int) -> RetinaMatcher:
    pos, neg, low, kw = _CONFIGS[config]
    return RetinaMatcher(pos, neg, low, **kw)


def run(problem: Dict) -> Dict:
    """Outputs of the installed matcher on one problem, in the stored (sparse) form."""
    m = matcher_for(problem["config"])
    try:
        if "quality" in problem:
            matches, labels = m.match_quality_matrix(problem["quality"])
        else:
            matches, labels = m.match_batch(anchors_of(problem), problem["gts"])
    except ValueError as e:
        return {"error": str(e)}
    flat_m, flat_l = matches.reshape(-1), labels.reshape(-1)
    at = torch.nonzero((flat_l != 0) | (flat_m != -1)).squeeze(1)
    return {"shape": torch.tensor(matches.shape), "at": at.int(), "matches": flat_m[at].short(), "labels": flat_l[at]}


def main(path: str) -> None:
    probs = problems()
    torch.save({"problems": probs, "outputs": [run(p) for p in probs]}, path)


if __name__ == "__main__":
    main(sys.argv[1])
