"""`screen evaluate`: how a worklist compares with the truth for the same series.

The flow reads top to bottom, one module a step:

1. :func:`screen.truth.read_truth` checks the truth CSV and returns
   :class:`~screen.truth.TruthCase` records;
2. :mod:`.reading`: :func:`read_worklist` checks the worklist Parquet and returns one
   :class:`WorklistEntry` per series;
3. :mod:`.matching`: :func:`match_cases` joins them. A truth series the worklist lacks, or
   holds only as an error, is a miss: score 0, not flagged, listed by UID. Worklist rows
   outside the truth are counted, not used;
4. :mod:`.evaluation`: :func:`evaluate` computes AUROC, the operating point's rates, the
   localisation rates and the strata, each with its interval, into one frozen
   :class:`Evaluation`;
5. :mod:`.table` (:func:`render_table`), :meth:`Evaluation.to_dict` and :mod:`.roc`
   (:func:`plot_roc`) present it.
"""

from screen.evaluate.evaluation import MIN_STRATUM_POSITIVES, Evaluation, Stratum, evaluate
from screen.evaluate.matching import ERROR, FOUND, MISSING, Case, match_cases
from screen.evaluate.reading import WORKLIST_COLUMNS, Worklist, WorklistEntry, read_worklist
from screen.evaluate.roc import plot_roc
from screen.evaluate.table import render_table

__all__ = [
    "ERROR",
    "FOUND",
    "MIN_STRATUM_POSITIVES",
    "MISSING",
    "WORKLIST_COLUMNS",
    "Case",
    "Evaluation",
    "Stratum",
    "Worklist",
    "WorklistEntry",
    "evaluate",
    "match_cases",
    "plot_roc",
    "read_worklist",
    "render_table",
]
