"""Evaluation report: JSON, a markdown page, PR/ROC curves as PNG, worst-frame thumbnails."""

from __future__ import annotations

import heapq
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from ood_perception.contract import IGNORE_LABEL
from ood_perception.evaluation.pixel_metrics import Curve, downsample_curve

THUMB_WIDTH = 320


def thumbnail(rgb: np.ndarray | None, score: np.ndarray, label: np.ndarray) -> np.ndarray:
    """Image | score heatmap | label (green anomaly, grey ignore), side by side, BGR uint8.

    Without an image (precomputed scores) only the heatmap and the label are drawn.
    """
    panels_image = rgb is not None  # precomputed score maps come without their images
    if rgb is None:
        rgb = np.zeros((*score.shape, 3), np.uint8)
    height = max(1, round(rgb.shape[0] * THUMB_WIDTH / rgb.shape[1]))
    size = (THUMB_WIDTH, height)
    image = cv2.resize(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), size, interpolation=cv2.INTER_AREA)
    finite = score[np.isfinite(score)]
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    norm = np.clip((score - lo) / max(hi - lo, 1e-12), 0, 1)
    heat = cv2.applyColorMap((norm * 255).astype(np.uint8), cv2.COLORMAP_MAGMA)
    heat = cv2.resize(heat, size, interpolation=cv2.INTER_AREA)
    small = cv2.resize(label, size, interpolation=cv2.INTER_NEAREST)
    truth = image // 2
    truth[small == 1] = (0, 220, 0)
    truth[small == IGNORE_LABEL] = (128, 128, 128)
    return np.concatenate([image, heat, truth] if panels_image else [heat, truth], axis=1)


@dataclass
class WorstFrames:
    """Keeps the `count` frames with the lowest per-frame AP (frames with anomalies only)."""

    count: int = 8
    start: int = 0  # index of the first frame offered (a shard's place in the dataset)
    _heap: list = field(default_factory=list)
    _order: int = 0

    def __post_init__(self) -> None:
        self._order = self.start

    def offer(self, name: str, frame_ap: float, rgb: np.ndarray | None, score, label) -> None:
        """Consider one frame; a thumbnail is drawn only when it enters the worst set."""
        if self.count <= 0 or math.isnan(frame_ap):
            return
        key = (-frame_ap, self._order)
        self._order += 1
        if len(self._heap) < self.count:
            heapq.heappush(self._heap, (key, name, frame_ap, None))
        elif key > self._heap[0][0]:
            heapq.heapreplace(self._heap, (key, name, frame_ap, None))
        else:
            return
        index = next(i for i, entry in enumerate(self._heap) if entry[0] == key)
        self._heap[index] = (key, name, frame_ap, thumbnail(rgb, score, label))

    def merge_from(self, other: WorstFrames) -> None:
        """Take in another keeper's frames (a shard's, started at its own `start`): the
        result is what one keeper offered every frame in order would hold."""
        for entry in other._heap:
            if len(self._heap) < self.count:
                heapq.heappush(self._heap, entry)
            elif self.count and entry[0] > self._heap[0][0]:
                heapq.heapreplace(self._heap, entry)

    def frames(self) -> list[tuple[str, float, np.ndarray | None]]:
        """(name, per-frame AP, thumbnail) from the worst up."""
        ordered = sorted(self._heap, key=lambda entry: entry[0], reverse=True)
        return [(name, ap, thumb) for _, name, ap, thumb in ordered]


def plot_curves(curve: Curve, ap: float, auroc: float, out_dir: Path) -> list[Path]:
    """`pr_curve.png` and `roc_curve.png` (matplotlib Agg, no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    paths = []
    recall, precision = downsample_curve(curve.tpr, curve.precision)
    fpr, tpr = downsample_curve(curve.fpr, curve.tpr)
    plots = [
        ("pr_curve.png", recall, precision, "recall", "precision", f"PR curve, AP = {ap:.4f}"),
        (
            "roc_curve.png",
            fpr,
            tpr,
            "false positive rate",
            "true positive rate",
            f"ROC curve, AUROC = {auroc:.4f}",
        ),
    ]
    for name, x, y, xlabel, ylabel, title in plots:
        figure, axes = pyplot.subplots(figsize=(5, 4.5), dpi=100)
        axes.plot(
            np.concatenate([[0.0], x]), np.concatenate([[y[0] if name[0] == "p" else 0.0], y])
        )
        axes.set(xlabel=xlabel, ylabel=ylabel, title=title, xlim=(0, 1), ylim=(0, 1.02))
        axes.grid(alpha=0.3)
        figure.tight_layout()
        figure.savefig(out_dir / name)
        pyplot.close(figure)
        paths.append(out_dir / name)
    return paths


def figure(value, spec: str = ".4f") -> str:
    """A reported number; undefined ones (NaN, inf; null in the JSON) read n/a."""
    if isinstance(value, float):
        return format(value, spec) if math.isfinite(value) else "n/a"
    return str(value)


def _json_safe(value):
    """NaN and +-inf as None: JSON has no such numbers, and they mean "undefined" here."""
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_json(results: dict, path: Path) -> None:
    """Results as strict JSON (undefined numbers as null) that any JSON reader accepts."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(_json_safe(results), indent=2, allow_nan=False) + "\n")


def write_markdown(results: dict, curve: Curve, worst: WorstFrames, out_dir: Path) -> Path:
    """`report.md` with the metrics table, the curves and the worst frames."""
    out_dir.mkdir(parents=True, exist_ok=True)
    plot_curves(curve, results["ap"], results["auroc"], out_dir)
    lines = [f"# Evaluation: {results.get('source', '')}", ""]
    lines += ["| metric | value |", "| --- | --- |"]
    rows = [
        ("AP", "ap"),
        ("AUROC", "auroc"),
        ("FPR at 95% TPR", "fpr95"),
        ("best pixel IoU", "best_iou"),
        ("AuIoU (S2M)", "auiou"),
        ("mean F1 over thresholds (S2M)", "mean_f1"),
    ]
    lines += [f"| {title} | {figure(results.get(key, float('nan')))} |" for title, key in rows]
    components = results.get("components") or {}
    for key in ("siou_gt", "ppv", "f1_25", "f1_50", "f1_75", "f1_mean", "threshold"):
        if key in components:
            lines.append(f"| component {key} | {figure(components[key])} |")
    lines += ["", "| count | value |", "| --- | --- |"]
    lines += [f"| {k} | {v} |" for k, v in results.get("counts", {}).items()]
    lines += ["", "![PR curve](pr_curve.png) ![ROC curve](roc_curve.png)", ""]
    frames = worst.frames()
    if frames:
        lines += ["## Worst frames (lowest per-frame AP)", "", "[image |] score | label", ""]
        (out_dir / "worst").mkdir(exist_ok=True)
        for rank, (name, frame_ap, thumb) in enumerate(frames):
            lines.append(f"{rank + 1}. `{name}`: AP {frame_ap:.4f}")
            if thumb is not None:
                file = f"worst/{rank:02d}_{Path(name).name}.png"
                cv2.imwrite(str(out_dir / file), thumb)
                lines += ["", f"   ![{name}]({file})", ""]
    path = out_dir / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path
