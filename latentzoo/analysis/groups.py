"""Group statistics of a model x model similarity matrix, as the paper's authors compute them.

Models come in groups (seeds of one objective). The similarity of group A to itself is the mean of
the off-diagonal entries of its block (each pair counted in both orders, as the authors' scripts
take ``matrix[~eye]``); of group A to group B, the mean of all entries of the A x B block. The SD
is over the same entries with ``ddof=1`` (NaN for a single entry).
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from latentzoo.errors import UserError


def group_entries(matrix: np.ndarray, rows: Sequence[int], cols: Sequence[int]) -> np.ndarray:
    """Entries of ``matrix[rows][:, cols]``; when ``rows`` and ``cols`` are the same group, its off-diagonal ones."""
    block = np.asarray(matrix, dtype=np.float64)[np.ix_(rows, cols)]
    if list(rows) == list(cols):
        return block[~np.eye(len(rows), dtype=bool)]
    return block.ravel()


def group_similarity(matrix: np.ndarray, labels: Sequence[str]) -> pd.DataFrame:
    """Mean and SD of the similarity between every pair of groups (``labels[i]`` is model i's group).

    Returns a long table ``group_a, group_b, mean, sd, n`` (n = entries averaged), groups in order
    of first appearance; a group of one model has no within-group pair (mean NaN, n 0).
    """
    labels = list(labels)
    if len(labels) != len(matrix):
        raise UserError(f"{len(labels)} group labels for a {len(matrix)} x {len(matrix)} matrix")
    members = {g: [i for i, label in enumerate(labels) if label == g] for g in dict.fromkeys(labels)}
    rows = []
    for a, ia in members.items():
        for b, ib in members.items():
            values = group_entries(matrix, ia, ib)
            rows.append({"group_a": a, "group_b": b, "mean": float(values.mean()) if len(values) else np.nan,
                         "sd": float(values.std(ddof=1)) if len(values) > 1 else np.nan, "n": len(values)})
    return pd.DataFrame(rows, columns=["group_a", "group_b", "mean", "sd", "n"])


def parse_groups(specs: Sequence[str]) -> dict[str, list[str]]:
    """``["distance=DIR1,DIR2", ...]`` -> ``{"distance": ["DIR1", "DIR2"], ...}`` (UserError on a bad spec)."""
    groups: dict[str, list[str]] = {}
    for spec in specs:
        name, sep, members = spec.partition("=")
        items = [m for m in members.split(",") if m]
        if not sep or not name or not items:
            raise UserError(f"--group {spec!r}: expected NAME=MODEL1,MODEL2,...")
        groups.setdefault(name, []).extend(items)
    return groups


def labels_of(groups: Mapping[str, Sequence[str]]) -> dict[str, str]:
    """Invert ``{group: [model, ...]}`` to ``{model: group}``; a model in two groups is an error."""
    labels: dict[str, str] = {}
    for group, models in groups.items():
        for m in models:
            if labels.setdefault(m, group) != group:
                raise UserError(f"model {m} is in two groups ({labels[m]} and {group})")
    return labels
