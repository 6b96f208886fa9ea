"""DOoD training (Galesso et al., ECCV 2024, section 5.2): a denoiser on segmentor features.

In-distribution images only, no outliers. The segmentor's last-block attention keys of
every image are collected once (cells labelled void dropped, as the official reference
features), normalised to about [-1, 1] with their min/max, and the denoiser learns
epsilon with an MSE loss at uniformly drawn time steps t in 0..999 (the DDPM recipe the
paper follows; the official training code is not released). Also here: the compound
score's in-distribution statistics, measured on the deployed graph's own maps.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from ood_perception.core.preprocess import resize_frame
from ood_perception.errors import ConfigurationError
from ood_perception.models.deploy import DeployModel
from ood_perception.models.dood.checkpoints import (
    official_normalization_state,
    save_official_checkpoint,
)
from ood_perception.models.dood.compound import DOoDStatistics, StatisticsAccumulator
from ood_perception.models.dood.diffusion import DiffusionModel
from ood_perception.models.dood.network import DOoDNetwork
from ood_perception.models.dood.normalization import shift_and_scale
from ood_perception.models.dood.schedule import DDPMSchedule
from ood_perception.models.registry import ExportRequest, build_model
from ood_perception.training.data import IGNORE, Samples, fit_window
from ood_perception.training.uem import (
    OptimConfig,
    TrainResult,
    adamw,
    descend,
    device_of,
    normalise,
    run_steps,
)

# Models on this package's DINOv2 segmentor, covered with one window while training.
DINOV2_MODELS = ("dood-demo", "dood-uem-dinov2-s", "dood-uem-dinov2-b", "dood-uem-dinov2-l")
# The official mmseg segmentors run whole images: whole Cityscapes frames by default.
MMSEG_MODELS = ("dood-segmenter-b", "dood-setr-l", "dood-setr-l-ade20k")
MMSEG_INPUT = (1024, 2048)


def model_defaults(model: str) -> tuple[tuple[int, int], tuple[int, int] | None]:
    """(segmentor input size while training, synthetic camera size or None = that size)."""
    if model == "dood-demo":
        from ood_perception.models.uem.demo import DEMO_CAMERA, DEMO_WINDOW

        return DEMO_WINDOW, DEMO_CAMERA
    if model in DINOV2_MODELS:
        from ood_perception.models.uem.build import DEFAULT_WINDOW

        return DEFAULT_WINDOW, None
    if model in MMSEG_MODELS:
        return MMSEG_INPUT, None
    raise ConfigurationError(f"cannot train DOoD for {model!r}; trainable: "
                             f"{', '.join(DINOV2_MODELS + MMSEG_MODELS)}")


def deploy_request(model: str, input_size: tuple[int, int], window: tuple[int, int],
                   **fields) -> ExportRequest:
    """The export request of a trained model: DINOv2 ones in one `window`, mmseg ones whole."""
    if model in DINOV2_MODELS:
        return ExportRequest(model=model, input_size=input_size, window=window,
                             single_window=True, **fields)
    return ExportRequest(model=model, input_size=input_size, **fields)


def frozen_network(model: str, window: tuple[int, int], segmentor_checkpoint: str | Path,
                   seed: int, variant: str | None = None, **denoiser) -> DOoDNetwork:
    """The model's network at `window` with the segmentor loaded and a fresh denoiser with
    the official init (last layers zero); `denoiser` overrides `UNet0DConfig` fields of the
    model's default (feature width, 6 levels, 3 middle blocks)."""
    from ood_perception.models.dood.checkpoints import load_segmentor

    deploy = build_model(deploy_request(model, window, window, random_init=True,
                                        score="diffusion", seed=seed, variant=variant))
    network = deploy.network.coverage.network
    load_segmentor(network.segmentor, segmentor_checkpoint)
    torch.manual_seed(seed)
    cfg = replace(network.diffusion.denoiser.cfg,
                  **{k: v for k, v in denoiser.items() if v is not None})
    network.diffusion = DiffusionModel(cfg)
    return network.eval()


@dataclass
class FeatureBank:
    """In-distribution features [M, C] and their per-channel statistics."""

    features: torch.Tensor
    images: int

    def stats(self) -> tuple[torch.Tensor, ...]:
        """(min, max, mean, std) per channel [C]."""
        f = self.features.float()
        return f.amin(0), f.amax(0), f.mean(0), f.std(0)


@torch.no_grad()
def collect_features(network: DOoDNetwork, samples: Samples, window: tuple[int, int],
                     count: int, seed: int, device: str = "cpu", batch_size: int = 8,
                     scale: tuple[float, float] = (1.0, 1.0), progress: bool = True
                     ) -> FeatureBank:
    """Keys of `count` samples (cycled, random scale/crop/flip as in `fit_window`) at the
    segmentor's input size `window`; cells whose nearest label is void are dropped."""
    if len(samples) == 0 or count < 1:
        raise ConfigurationError("DOoD training needs at least one in-distribution image")
    torch_device = device_of(device)
    segmentor = network.segmentor.to(torch_device).eval()
    grid = segmentor.grid
    rng = np.random.default_rng(seed)
    chunks = []
    for start in tqdm(range(0, count, batch_size), desc="features", disable=not progress,
                      leave=False):
        batch = [fit_window(*samples[i % len(samples)], window, rng, scale)
                 for i in range(start, min(start + batch_size, count))]
        _, keys = segmentor(normalise(np.stack([b[0] for b in batch]), torch_device))
        keys = keys.cpu()
        for (_, label), image_keys in zip(batch, keys, strict=True):
            if label is not None:
                cells = cv2.resize(label, grid[::-1], interpolation=cv2.INTER_NEAREST)
                image_keys = image_keys[torch.from_numpy(cells.reshape(-1) != IGNORE)]
            chunks.append(image_keys)
    network.to("cpu")
    features = torch.cat(chunks)
    if features.shape[0] < 2:
        raise ConfigurationError("too few labelled (non-void) feature cells to train on")
    return FeatureBank(features, count)


def train_denoiser(diffusion: DiffusionModel, bank: FeatureBank, optim: OptimConfig,
                   max_timestep: int | None = None, progress: bool = True) -> TrainResult:
    """Fit `diffusion.normalization` to the bank, then train the denoiser (epsilon MSE) at
    time steps drawn uniformly from 0 .. `max_timestep`-1 (None: the whole schedule, as the
    paper)."""
    device = device_of(optim.device)
    minimum, maximum, _, _ = bank.stats()
    shift, scale = shift_and_scale(minimum, maximum)
    diffusion.normalization.shift.copy_(shift)
    diffusion.normalization.scale.copy_(scale)
    x0_all = diffusion.normalization(bank.features.float()).to(device)
    schedule = DDPMSchedule.linear()
    steps = max_timestep or schedule.num_steps
    if not 1 <= steps <= schedule.num_steps:
        raise ConfigurationError(f"training time steps must be in 1..{schedule.num_steps}, got "
                                 f"{steps}")
    denoiser = diffusion.denoiser.to(device).train()
    opt, lr_schedule = adamw(list(denoiser.parameters()), optim)
    generator = torch.Generator(device="cpu").manual_seed(optim.seed)

    def step(_: int) -> float:
        index = torch.randint(x0_all.shape[0], (optim.batch_size,), generator=generator)
        t = torch.randint(steps, (optim.batch_size,), generator=generator)
        noise = torch.randn(optim.batch_size, x0_all.shape[1], generator=generator)
        x0, t, noise = x0_all[index.to(device)], t.to(device), noise.to(device)
        loss = F.mse_loss(denoiser(schedule.q_sample(x0, t, noise), t), noise)
        return descend(opt, lr_schedule, loss)

    result = run_steps(step, optim, "train-dood", progress)
    diffusion.to("cpu").eval()
    return result


def save_diffusion_checkpoint(diffusion: DiffusionModel, bank: FeatureBank, path: str | Path,
                              meta: dict, half: bool = False) -> Path:
    """The official `*_diff.pth` layout; `half` stores fp16 values (half the file)."""
    state = official_normalization_state(*bank.stats())
    state.update({f"denoiser.{k}": v for k, v in diffusion.denoiser.state_dict().items()})
    if half:
        state = {k: v.half() if v.is_floating_point() and k.startswith("denoiser.") else v
                 for k, v in state.items()}
    return save_official_checkpoint(state, path, meta)


@torch.no_grad()
def measure_statistics(deploy: DeployModel, samples: Samples, count: int, seed: int = 0,
                       progress: bool = True) -> DOoDStatistics:
    """The compound score's statistics from `count` random samples (the official code: 25
    training images), run through the deployed graph's coverage at its input size: S over
    every pixel, E over pixels not labelled void (the official code takes E over feature
    cells; with nearest upsampling of whole cells the two agree)."""
    if count < 2 or len(samples) < count:
        raise ConfigurationError(f"need at least 2 and at most {len(samples)} (available) "
                                 f"in-distribution images for the DOoD statistics, got {count}")
    size = deploy.info.input_size
    coverage = deploy.network.coverage
    accumulator = StatisticsAccumulator()
    chosen = np.random.default_rng(seed).choice(len(samples), count, replace=False)
    for index in tqdm(chosen, desc="dood-stats", disable=not progress, leave=False):
        rgb, label = samples[int(index)]
        x = torch.from_numpy(resize_frame(rgb, size)[None]).permute(0, 3, 1, 2).float()
        seg, diffusion = coverage((x - deploy.mean) * deploy.inv_std)
        valid = None
        if label is not None:
            label = cv2.resize(label, size[::-1], interpolation=cv2.INTER_NEAREST)
            valid = torch.from_numpy(label != IGNORE)[None]
        accumulator.update(seg, diffusion[:, 0], valid)
    params = deploy.info.score_params["diffusion"]
    return accumulator.result(params["timesteps"], params["weighting"], count)
