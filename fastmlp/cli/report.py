"""The scores ``fastmlp`` reports: accuracy, per-class precision, recall and F1 and the
confusion matrix for a classifier; R², MAE and RMSE for a regressor.

They are computed here with numpy rather than taken from scikit-learn, which the command
does not depend on: every classification score follows from the confusion matrix, and
the tests check each against ``sklearn.metrics``.  Multi-output regression scores are
means over the outputs, as scikit-learn's default (``multioutput="uniform_average"``).
"""
from __future__ import annotations

import numpy as np


def confusion_matrix(truth, predicted, n_classes: int) -> np.ndarray:
    """(k, k) int64 counts: row = true class, column = predicted class."""
    flat = np.asarray(truth, np.int64) * n_classes + np.asarray(predicted, np.int64)
    return np.bincount(flat, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def _ratio(num, den) -> np.ndarray:
    """num / den, 0 where den is 0 (scikit-learn's zero_division=0)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1), 0.0)


def classification_report(truth, predicted, classes) -> dict:
    """Accuracy, per-class precision, recall, F1 and support, and the confusion matrix of
    class codes ``predicted`` against ``truth``."""
    cm = confusion_matrix(truth, predicted, len(classes))
    hits = np.diag(cm).astype(np.float64)
    precision = _ratio(hits, cm.sum(axis=0))
    recall = _ratio(hits, cm.sum(axis=1))
    return {"classes": list(classes), "accuracy": float(hits.sum() / max(cm.sum(), 1)),
            "precision": precision, "recall": recall,
            "f1": _ratio(2 * precision * recall, precision + recall),
            "support": cm.sum(axis=1), "confusion": cm}


def format_classification_report(report: dict) -> str:
    """The report as aligned text lines: a per-class table, then the confusion matrix."""
    names = [str(c) for c in report["classes"]]
    w = max(5, *map(len, names))
    lines = [f"accuracy {report['accuracy']:.4f}",
             f"{'class':<{w}}  precision  recall      f1  support"]
    for i, name in enumerate(names):
        lines.append(f"{name:<{w}}  {report['precision'][i]:9.4f}  {report['recall'][i]:6.4f}"
                     f"  {report['f1'][i]:6.4f}  {report['support'][i]:7d}")
    cm = report["confusion"]
    cw = max(w, len(str(cm.max())))
    lines.append("confusion matrix (rows: true class, columns: predicted class)")
    lines.append(" " * w + "".join(f"  {n:>{cw}}" for n in names))
    for name, row in zip(names, cm):
        lines.append(f"{name:<{w}}" + "".join(f"  {v:>{cw}d}" for v in row))
    return "\n".join(lines)


def regression_scores(pred, y) -> list[tuple[str, float]]:
    """[("R²", ...), ("MAE", ...), ("RMSE", ...)] of ``pred`` against ``y`` (both (n, k)).

    A constant target has R² 1 when predicted exactly, else 0 (scikit-learn's
    convention)."""
    err = np.asarray(pred, dtype=np.float64) - y
    ss_res = np.sum(err**2, axis=0)
    ss_tot = np.sum((y - y.mean(axis=0))**2, axis=0)
    r2 = np.where(ss_tot > 0, 1 - _ratio(ss_res, ss_tot), np.where(ss_res > 0, 0.0, 1.0))
    return [("R²", float(np.mean(r2))),
            ("MAE", float(np.mean(np.abs(err)))),
            ("RMSE", float(np.mean(np.sqrt(np.mean(err**2, axis=0)))))]
