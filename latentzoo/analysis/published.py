"""The paper's published numbers, shipped as package data (``latentzoo/data/*.tsv``).

* :func:`paper_scores`: Tables C.1 (ResNet-50, 5 seeds) and C.2 (ResNet-18, 8 seeds; untrained 5):
  mean public Brain-Score per objective: ``table, arch, objective, output_units, V1, V2, V4, IT,
  neural_mean, behavior``.
* :func:`paper_performance_alignment`: Table C.3 (ResNet-50): Pearson r of negative held-out loss
  and alignment across seeds and snapshots, per objective: ``objective, V1, V2, V4, IT,
  neural_mean, behavior``.
"""

from __future__ import annotations

import io
from importlib import resources

import pandas as pd

#: Score columns of the paper's tables, in their order.
SCORE_COLUMNS = ("V1", "V2", "V4", "IT", "neural_mean", "behavior")


def _read(name: str) -> pd.DataFrame:
    text = resources.files("latentzoo").joinpath(f"data/{name}").read_text()
    return pd.read_csv(io.StringIO(text), sep="\t", comment="#")


def paper_scores() -> pd.DataFrame:
    """Tables C.1 and C.2 of Xie et al. (ICLR 2025) as one table."""
    return _read("paper_scores.tsv")


def paper_performance_alignment() -> pd.DataFrame:
    """Table C.3 of Xie et al. (ICLR 2025)."""
    return _read("paper_performance_alignment.tsv")
