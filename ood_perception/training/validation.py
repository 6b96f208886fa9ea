"""Held-out figures of a UEM: anomaly AP / FPR95 / AUROC and segmentation mIoU."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm

from ood_perception.evaluation.pixel_metrics import PixelMetrics
from ood_perception.models.tiling import SingleWindow
from ood_perception.models.uem.network import UEMNetwork
from ood_perception.models.uem.scores import llr
from ood_perception.training.uem import device_of, normalise


@dataclass
class Evaluation:
    """Held-out figures: anomaly AP / FPR95 / AUROC (fractions) and segmentation mIoU."""

    ap: float
    fpr95: float
    auroc: float
    miou: float
    class_iou: dict[int, float]
    frames: int

    def as_dict(self) -> dict:
        return {"ap": self.ap, "fpr95": self.fpr95, "auroc": self.auroc, "miou": self.miou,
                "class_iou": {str(k): v for k, v in self.class_iou.items()},
                "frames": self.frames}


Predictor = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


@torch.no_grad()
def predict(network: UEMNetwork, images: np.ndarray, device: str = "cpu"
            ) -> tuple[np.ndarray, np.ndarray]:
    """uint8 [B, H, W, 3] -> (LLR score float32 [B, H, W], classes uint8 [B, H, W]).

    The frame is resized into one window, as the single-window export does.
    """
    torch_device = device_of(device)
    coverage = SingleWindow(network.to(torch_device).eval(), images.shape[1:3], network.window)
    seg, uem = coverage(normalise(images, torch_device))
    return (llr(seg, uem).float().cpu().numpy(),
            seg.argmax(dim=1).to(torch.uint8).cpu().numpy())


def network_predictor(network: UEMNetwork, device: str = "cpu") -> Predictor:
    """`predict` bound to a network: what `evaluate` calls during training."""
    return lambda images: predict(network, images, device)


def deploy_predictor(deploy: torch.nn.Module) -> Predictor:
    """An exported-graph wrapper (`DeployModel`, uint8 in) as a predictor: what ships."""
    def run(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        with torch.no_grad():
            score, classes = deploy.eval()(torch.from_numpy(np.ascontiguousarray(images)))
        return score.numpy(), classes.numpy()

    return run


def evaluate(predictor: Predictor, frames: Sequence, batch_size: int = 8, num_classes: int = 19,
             progress: bool = False) -> Evaluation:
    """AP / FPR95 / AUROC over frames' anomaly labels and mIoU over their semantic labels.

    `frames` holds objects with `rgb`, `anomaly` and `semantic` (e.g.
    `synthetic.scenes.SceneFrame`); mIoU averages the classes present in the labels.
    """
    metrics = PixelMetrics()
    confusion = np.zeros((num_classes, num_classes), np.int64)
    for start in tqdm(range(0, len(frames), batch_size), desc="evaluate", disable=not progress,
                      leave=False):
        chunk = frames[start:start + batch_size]
        scores, classes = predictor(np.stack([f.rgb for f in chunk]))
        for frame, score, pred in zip(chunk, scores, classes, strict=True):
            metrics.update(score, frame.anomaly)
            valid = frame.semantic < num_classes
            confusion += np.bincount(frame.semantic[valid].astype(np.int64) * num_classes
                                     + pred[valid], minlength=num_classes ** 2
                                     ).reshape(num_classes, num_classes)
    gt, hits = confusion.sum(axis=1), np.diag(confusion)
    union = gt + confusion.sum(axis=0) - hits
    class_iou = {k: float(hits[k] / union[k]) for k in range(num_classes) if gt[k] > 0}
    summary = metrics.summary()
    return Evaluation(ap=summary["ap"], fpr95=summary["fpr95"], auroc=summary["auroc"],
                      miou=float(np.mean(list(class_iou.values()))) if class_iou else math.nan,
                      class_iou=class_iou, frames=len(frames))
