"""Training of a GMM head (GMMSeg, used by UEM's "g" variants): memory, Sinkhorn, EM updates.

`GMMSegHead` holds only what inference needs; this object holds the official training state
(per-component feature queue, queue pointers, iteration counter) and does one training
forward: class logits, the component-contrast logits and targets (Sinkhorn assignment of
each correctly classified pixel to a component of its class), and, without gradients, the
queue update and the momentum update of means and diagonal scales every `update_interval`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ood_perception.contract import IGNORE_LABEL
from ood_perception.models.uem.heads import GMMSegHead

IGNORE = IGNORE_LABEL


@dataclass(frozen=True)
class GMMTrainingConfig:
    """Official defaults (configs/segmentation/*/base.yaml)."""

    memory_size: int = 8000
    update_interval: int = 5
    gamma_mean: float = 0.999
    gamma_cov: float = 0.0
    # Features enqueued per component and step at most.
    max_sample_size: int = 20
    sinkhorn_iterations: int = 3
    sinkhorn_epsilon: float = 0.05


@torch.no_grad()
def sinkhorn(scores: torch.Tensor, iterations: int, epsilon: float) -> torch.Tensor:
    """[N, M] scores -> [N] component index, balanced so components get similar counts."""
    q = torch.exp(scores / epsilon).t()
    components, samples = q.shape
    q = q / q.sum()
    for _ in range(iterations):
        q = q / q.sum(dim=1, keepdim=True) / components
        q = q / q.sum(dim=0, keepdim=True) / samples
    return torch.nan_to_num(q.t(), nan=0.0).argmax(dim=1)


class GMMHeadTrainer:
    """Training state of one `GMMSegHead`; `state_dict(prefix)` gives its official buffers."""

    def __init__(self, head: GMMSegHead, config: GMMTrainingConfig = GMMTrainingConfig()):
        self.head = head
        self.config = config
        classes, components, dim = head.means.shape
        self.classes, self.components, self.dim = classes, components, dim
        device = head.means.device
        self.queue = F.normalize(torch.randn(classes * components, dim, config.memory_size,
                                             device=device), dim=1)
        self.queue_ptr = torch.zeros(classes * components, dtype=torch.long, device=device)
        self.iteration = 0

    def forward(self, x: torch.Tensor, target: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x [B, D, h, w], target [B, h, w] (255 ignore) -> (logits [B, K, h, w],
        contrast logits [B*h*w, K*M], contrast targets [B*h*w], 255 where ignored)."""
        head = self.head
        b, d, h, w = x.shape
        feats = F.normalize(head.feat_norm(x.permute(0, 2, 3, 1).reshape(-1, d)), dim=-1)
        log_prob = head.component_log_prob(feats)
        logits = head.mask_norm(log_prob.amax(dim=-1))
        target = target.reshape(-1)
        contrast_target, assigned = self._assign(log_prob.detach(), logits.detach(), target)
        with torch.no_grad():
            self._enqueue(feats.detach(), target, assigned)
            if self.iteration % self.config.update_interval == 0:
                self._update_gaussians(target)
            self.iteration += 1
        logits = logits.reshape(b, h, w, -1).permute(0, 3, 1, 2)
        return logits, log_prob.flatten(1), contrast_target

    def _assign(self, log_prob: torch.Tensor, logits: torch.Tensor, target: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """Sinkhorn component per pixel of its ground-truth class; -1 if not enqueued."""
        correct = logits.argmax(dim=1) == target
        contrast = torch.full_like(target, IGNORE)
        assigned = torch.full_like(target, -1)
        for k in target.unique().tolist():
            if k == IGNORE or not 0 <= k < self.classes:
                continue
            pixels = target == k
            scores = log_prob[pixels, k, :]
            scores = scores / scores.abs().max().clamp_min(1e-12)
            index = sinkhorn(scores, self.config.sinkhorn_iterations, self.config.sinkhorn_epsilon)
            contrast[pixels] = index + k * self.components
            assigned[pixels] = torch.where(correct[pixels], index, -1)
        return contrast, assigned

    def _enqueue(self, feats: torch.Tensor, target: torch.Tensor, assigned: torch.Tensor) -> None:
        memory = self.config.memory_size
        for k in target.unique().tolist():
            if k == IGNORE or not 0 <= k < self.classes:
                continue
            for m in range(self.components):
                chosen = feats[(target == k) & (assigned == m)]
                if chosen.shape[0] == 0:
                    continue
                limit = self.config.max_sample_size
                if 0 < limit < chosen.shape[0]:
                    index = torch.linspace(0, chosen.shape[0] - 1, limit,
                                           device=feats.device).long()
                    chosen = chosen[index]
                slot = k * self.components + m
                ptr = int(self.queue_ptr[slot])
                positions = (ptr + torch.arange(chosen.shape[0], device=feats.device)) % memory
                self.queue[slot][:, positions] = chosen.t()
                self.queue_ptr[slot] = (ptr + chosen.shape[0]) % memory

    def _update_gaussians(self, target: torch.Tensor) -> None:
        head, cfg = self.head, self.config
        means = F.normalize(head.means.data, dim=-1)
        diagonal = head.diagonal.data.clone()
        for k in target.unique().tolist():
            if k == IGNORE or not 0 <= k < self.classes:
                continue
            for m in range(self.components):
                queued = self.queue[k * self.components + m].t()
                mean = F.normalize(queued.sum(dim=0), dim=0)
                means[k, m] = cfg.gamma_mean * means[k, m] + (1 - cfg.gamma_mean) * mean
                spread = ((queued - mean) ** 2).mean(dim=0).add(1e-2).sqrt()
                diagonal[k, m] = cfg.gamma_cov * diagonal[k, m] + (1 - cfg.gamma_cov) * spread
        head.means.data.copy_(means)
        head.diagonal.data.copy_(diagonal)

    def state_dict(self, prefix: str) -> dict[str, torch.Tensor]:
        """The official training buffers of this head under `prefix` (e.g. "ood_head")."""
        return {f"{prefix}.queue": self.queue.detach().cpu(),
                f"{prefix}.queue_ptr": self.queue_ptr.detach().cpu(),
                f"{prefix}.iteration_counter": torch.tensor([float(self.iteration)]),
                f"{prefix}.eye_matrix": torch.ones(self.dim)}
