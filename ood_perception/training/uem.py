"""Two-stage UEM training (Nayal et al., A Likelihood Ratio-Based Approach to Segmenting
Unknown Objects, sections 3.3-3.6) in plain PyTorch, CPU or CUDA.

Stage 1 trains the inlier segmentor (ViT + FPN + head) with cross-entropy (plus the GMMSeg
contrast term for a GMM head). Stage 2 freezes it and trains the UEM (projector + 2-way head)
on inlier images with pasted negative objects, with BCE on the LLR score plus, for a GMM
head, its cross-entropy and contrast terms. Checkpoints use the official Lightning layout, so
`ood-perception export` and `models/uem/checkpoints.py` read them like the released ones.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from ood_perception.backends.device import parse_device
from ood_perception.contract import IMAGENET_MEAN_255, IMAGENET_STD_255
from ood_perception.errors import ConfigurationError
from ood_perception.models.loading import load_strict
from ood_perception.models.uem.checkpoints import (
    convert_segmentor_state,
    load_state_dict,
    save_lightning_checkpoint,
)
from ood_perception.models.uem.heads import GMMSegHead
from ood_perception.models.uem.network import UEMConfig, UEMNetwork, uem_config
from ood_perception.models.uem.scores import llr
from ood_perception.training.data import IGNORE, Samples, fit_window, outlier_batch
from ood_perception.training.gmm import GMMHeadTrainer, GMMTrainingConfig
from ood_perception.training.negatives import NegativeSet

DINOV2_WINDOW = (518, 1036)
# Official loss weights (configs/segmentation/*): GMMSeg contrast, UEM GMM cross-entropy.
CONTRAST_WEIGHT = 0.01
UEM_GMM_WEIGHT = 0.5


def model_config(model: str, variant: str = "dd"
                 ) -> tuple[UEMConfig, tuple[int, int], tuple[int, int] | None]:
    """The network configuration, default training window and synthetic camera size (None:
    the window) of a registered UEM model."""
    if model == "uem-demo":
        from ood_perception.models.uem.demo import DEMO_CAMERA, DEMO_WINDOW, demo_config

        return demo_config(variant), DEMO_WINDOW, DEMO_CAMERA
    sizes = {"uem-dinov2-s": "s", "uem-dinov2-b": "b", "uem-dinov2-l": "l"}
    if model not in sizes:
        raise ConfigurationError(f"cannot train {model!r}; trainable models: uem-demo, "
                                 f"{', '.join(sizes)}")
    return uem_config(sizes[model], variant), DINOV2_WINDOW, None


@dataclass(frozen=True)
class OptimConfig:
    """AdamW with linear warm-up then linear (poly 1) decay, as the official solver."""

    steps: int = 1000
    batch_size: int = 8
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup: int = 100
    seed: int = 0
    device: str = "cpu"

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch_size < 1:
            raise ConfigurationError(f"steps and batch size must be >= 1, got {self.steps} and "
                                     f"{self.batch_size}")
        if not self.lr > 0:
            raise ConfigurationError(f"learning rate must be positive, got {self.lr}")

    def factor(self, step: int) -> float:
        if step < self.warmup:
            return (step + 1) / (self.warmup + 1)
        return max(1.0 - (step - self.warmup) / max(self.steps - self.warmup, 1), 0.01)


@dataclass
class TrainResult:
    """Per-step losses and wall time of one stage."""

    losses: list[float]
    seconds: float


def device_of(name: str) -> torch.device:
    """A torch device, refusing CUDA where there is none."""
    device = torch.device(str(parse_device(name, "--device")))
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigurationError(f"--device {name}: CUDA is not available here; use cpu")
    return device


def normalise(batch: np.ndarray, device: torch.device) -> torch.Tensor:
    """uint8 RGB [B, H, W, 3] -> ImageNet-normalised float [B, 3, H, W] (as the deploy graph)."""
    x = torch.from_numpy(np.ascontiguousarray(batch)).to(device).permute(0, 3, 1, 2).float()
    mean = torch.tensor(IMAGENET_MEAN_255, device=device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD_255, device=device).view(1, 3, 1, 1)
    return (x - mean) / std


# --- networks and checkpoints ---------------------------------------------------------------

def sincos_pos_embed(dim: int, grid: int) -> torch.Tensor:
    """Fixed 2-D sine-cosine position embedding [1, 1 + grid^2, dim] (class token: zeros)."""
    if dim % 4:
        raise ConfigurationError(f"embed dim {dim} must be a multiple of 4")
    omega = 1.0 / 10000 ** (torch.arange(dim // 4, dtype=torch.float64) / (dim // 4))
    ys, xs = torch.meshgrid(torch.arange(grid, dtype=torch.float64),
                            torch.arange(grid, dtype=torch.float64), indexing="ij")
    parts = [f(pos.reshape(-1, 1) * omega) for pos in (ys, xs) for f in (torch.sin, torch.cos)]
    table = torch.cat(parts, dim=1).float()
    return torch.cat([torch.zeros(1, dim), table]).unsqueeze(0)


def build_network(cfg: UEMConfig, window: tuple[int, int], seed: int,
                  backbone_checkpoint: str | Path | None = None) -> UEMNetwork:
    """A fresh network; a DINOv2 hub checkpoint loads into the ViT, otherwise its position
    embedding is set to fixed sine-cosine (the cached embedding is not trained)."""
    torch.manual_seed(seed)
    network = UEMNetwork(cfg, window)
    vit = network.segmentor.backbone.dinov2
    if backbone_checkpoint is not None:
        state = load_state_dict(backbone_checkpoint)
        load_strict(vit, state, f"backbone checkpoint {backbone_checkpoint}")
    else:
        with torch.no_grad():
            vit.pos_embed.copy_(sincos_pos_embed(cfg.vit.embed_dim, cfg.vit.pos_grid))
        vit.refresh_pos_cache()
    return network


def load_segmentor(network: UEMNetwork, path: str | Path) -> dict[str, torch.Tensor]:
    """Load a segmentor `.ckpt` (official layout) into `network.segmentor`; its raw state.

    A UEM `.ckpt` works too: its `segmentor.*` part is taken, so a trained UEM's head can be
    retrained on new outliers without the separate stage-1 file.
    """
    raw = load_state_dict(path)
    if any(k.startswith("segmentor.") for k in raw):
        raw = {k.removeprefix("segmentor."): v for k, v in raw.items()
               if k.startswith("segmentor.")}
    load_strict(network.segmentor, convert_segmentor_state(raw), f"segmentor checkpoint {path}")
    return raw


def save_segmentor_checkpoint(network: UEMNetwork, path: str | Path, hyper: dict,
                              trainer: GMMHeadTrainer | None = None) -> Path:
    """The segmentor in the official `SegmentationModel` Lightning layout."""
    state = {k: v.detach().cpu() for k, v in network.segmentor.state_dict().items()}
    if trainer is not None:
        state.update(trainer.state_dict("segmentation_head"))
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    return save_lightning_checkpoint(state, path, hyper)


def save_uem_checkpoint(network: UEMNetwork, segmentor_state: dict[str, torch.Tensor],
                        path: str | Path, hyper: dict,
                        trainer: GMMHeadTrainer | None = None) -> Path:
    """The UEM in the official `OoDSegmentationModel` layout: `segmentor.*` (the frozen
    segmentor as loaded, training buffers included), `ood_projector.*`, `ood_head.*`."""
    state = {f"segmentor.{k}": v for k, v in segmentor_state.items()}
    for name in ("ood_projector", "ood_head"):
        module = getattr(network, name)
        state.update({f"{name}.{k}": v.detach().cpu() for k, v in module.state_dict().items()})
    if trainer is not None:
        state.update(trainer.state_dict("ood_head"))
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    return save_lightning_checkpoint(state, path, hyper)


# --- the two stages ---------------------------------------------------------------------------

def adamw(params: list[torch.nn.Parameter], optim: OptimConfig):
    """AdamW with the warm-up / decay schedule of `optim` (every training command's)."""
    opt = torch.optim.AdamW(params, lr=optim.lr, weight_decay=optim.weight_decay)
    return opt, torch.optim.lr_scheduler.LambdaLR(opt, optim.factor)


def _upsample(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


def _nearest(label: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    return F.interpolate(label[:, None].float(), size=size, mode="nearest")[:, 0].long()


def run_steps(step_fn, optim: OptimConfig, desc: str, progress: bool) -> TrainResult:
    """`optim.steps` calls of `step_fn(step) -> loss` with a progress bar; a loss that is
    not finite stops training with what to change."""
    losses: list[float] = []
    start = time.perf_counter()
    bar = tqdm(range(optim.steps), desc=desc, disable=not progress, dynamic_ncols=True)
    average = None
    for step in bar:
        loss = step_fn(step)
        if not math.isfinite(loss):
            raise ConfigurationError(f"{desc}: the loss became {loss} at step {step}; lower "
                                     "--lr or check the labels")
        losses.append(loss)
        average = loss if average is None else 0.95 * average + 0.05 * loss
        bar.set_postfix(loss=f"{average:.4f}")
    return TrainResult(losses, time.perf_counter() - start)


def _features(backbone: torch.nn.Module, x: torch.Tensor, frozen: bool) -> torch.Tensor:
    """FPN features; a frozen ViT runs without autograd.

    Its outputs are then marked as requiring grad: GroupNorm's backward on the FPN's
    channels-last maps segfaults in PyTorch 2.13 (CPU) when the input needs no gradient.
    """
    if not frozen:
        return backbone(x)[0]
    with torch.no_grad():
        tokens, levels = backbone.dinov2(x, backbone.layers)
    levels = [level.requires_grad_() for level in levels]
    return backbone.learnable_layers(tokens.requires_grad_(), levels, backbone.dinov2.grid)


def train_segmentor(network: UEMNetwork, samples: Samples, optim: OptimConfig,
                    freeze_backbone: bool = False, scale: tuple[float, float] = (1.0, 1.0),
                    gmm: GMMTrainingConfig = GMMTrainingConfig(), progress: bool = True
                    ) -> tuple[TrainResult, GMMHeadTrainer | None]:
    """Stage 1: segmentation training of `network.segmentor` on labelled samples."""
    if len(samples) == 0:
        raise ConfigurationError("no training samples")
    device = device_of(optim.device)
    segmentor = network.segmentor.to(device).train()
    backbone = segmentor.backbone.dinov2
    if freeze_backbone:
        backbone.requires_grad_(False)
        backbone.eval()
    head = segmentor.segmentation_head
    trainer = GMMHeadTrainer(head, gmm) if isinstance(head, GMMSegHead) else None
    torch.manual_seed(optim.seed)
    params = [p for p in segmentor.parameters() if p.requires_grad]
    opt, schedule = adamw(params, optim)
    rng = np.random.default_rng(optim.seed)
    window = network.window

    def step(_: int) -> float:
        batch = [fit_window(*samples[int(rng.integers(len(samples)))], window, rng, scale)
                 for _ in range(optim.batch_size)]
        if any(label is None for _, label in batch):
            raise ConfigurationError("segmentor training needs a label for every image")
        x = normalise(np.stack([b[0] for b in batch]), device)
        y = torch.from_numpy(np.stack([b[1] for b in batch])).to(device).long()
        feats = _features(segmentor.backbone, x, freeze_backbone)
        if trainer is None:
            logits = head(feats)
            loss = F.cross_entropy(_upsample(logits, window), y, ignore_index=IGNORE)
        else:
            target = _nearest(y, feats.shape[-2:])
            logits, contrast, contrast_target = trainer.forward(feats, target)
            loss = F.cross_entropy(_upsample(logits, window), y, ignore_index=IGNORE)
            loss = loss + CONTRAST_WEIGHT * F.cross_entropy(contrast, contrast_target,
                                                            ignore_index=IGNORE)
        return descend(opt, schedule, loss)

    result = run_steps(step, optim, "train-segmentor", progress)
    network.to("cpu").eval()
    return result, trainer


def descend(opt: torch.optim.Optimizer, schedule, loss: torch.Tensor) -> float:
    """One optimiser and learning-rate step on `loss`; its value for the progress bar."""
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    schedule.step()
    return float(loss.detach())


def llr_loss(seg: torch.Tensor, uem: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Eq. 12's BCE term: BCE(LLR = U_1 - U_0 - max_k F_k, target) over non-ignored pixels."""
    score = llr(seg, uem)
    valid = target != IGNORE
    if not valid.any():
        return score.sum() * 0.0
    return F.binary_cross_entropy_with_logits(score[valid], target[valid].float())


def train_uem(network: UEMNetwork, samples: Samples, negatives: NegativeSet, optim: OptimConfig,
              paste_prob: float = 0.9, max_objects: int = 3,
              scale: tuple[float, float] = (1.0, 1.0), min_size: int = 12,
              gmm: GMMTrainingConfig = GMMTrainingConfig(update_interval=3),
              progress: bool = True) -> tuple[TrainResult, GMMHeadTrainer | None]:
    """Stage 2: the segmentor stays frozen (eval mode, no gradients); UEM learns from pastes."""
    if len(samples) == 0:
        raise ConfigurationError("no inlier images to paste negatives into")
    if not 0.0 <= paste_prob <= 1.0 or max_objects < 1:
        raise ConfigurationError(f"paste probability must be in [0, 1] and max objects >= 1, "
                                 f"got {paste_prob} and {max_objects}")
    device = device_of(optim.device)
    network.to(device)
    network.segmentor.requires_grad_(False).eval()
    network.ood_projector.train()
    network.ood_head.train()
    trainer = GMMHeadTrainer(network.ood_head, gmm) if isinstance(
        network.ood_head, GMMSegHead) else None
    params = [p for p in network.parameters() if p.requires_grad]
    opt, schedule = adamw(params, optim)
    rng = np.random.default_rng(optim.seed)
    torch.manual_seed(optim.seed)
    window = network.window
    h, w = network.grid

    def step(_: int) -> float:
        images, targets = outlier_batch(samples, negatives, rng, window, optim.batch_size,
                                        paste_prob, max_objects, scale, min_size)
        x = normalise(images, device)
        y = torch.from_numpy(targets).to(device).long()
        with torch.no_grad():
            seg, tokens = network.segmentor(x)
        proj = network.ood_projector(tokens)
        proj = proj.transpose(1, 2).reshape(proj.shape[0], proj.shape[2], h, w)
        if trainer is None:
            uem = network.ood_head(proj)
        else:
            uem, contrast, contrast_target = trainer.forward(proj, _nearest(y, (h, w)))
        uem = _upsample(uem, window)
        loss = llr_loss(_upsample(seg, window), uem, y)
        if trainer is not None:
            loss = loss + UEM_GMM_WEIGHT * F.cross_entropy(uem, y, ignore_index=IGNORE)
            loss = loss + CONTRAST_WEIGHT * F.cross_entropy(contrast, contrast_target,
                                                            ignore_index=IGNORE)
        return descend(opt, schedule, loss)

    result = run_steps(step, optim, "train-uem", progress)
    network.to("cpu").eval()
    return result, trainer
