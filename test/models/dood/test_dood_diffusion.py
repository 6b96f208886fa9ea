"""The denoiser, normalisation and diffusion score equal a transcription of the official code.

The transcription follows lmb-freiburg/diffusion-for-ood (`unet_0d.py`, `diffusion_model.py`,
`gaussian_diffusion.py::calc_eps_cosine_loop`) step by step on [N, C] features with one time
step per row, with the noise it would draw injected instead. Every tensor is random: the
official init zeroes the last layers, which would leave the cosine undefined (0 / 0).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from ood_perception.errors import CheckpointError, ConfigurationError
from ood_perception.models.dood.checkpoints import (
    NORMALIZATION_TRAINING_ONLY,
    convert_diffusion_state,
    diffusion_config,
    official_normalization_state,
)
from ood_perception.models.dood.diffusion import (
    DiffusionModel,
    DiffusionScore,
    DiffusionScoreConfig,
)
from ood_perception.models.dood.normalization import shift_and_scale
from ood_perception.models.dood.schedule import DDPMSchedule
from ood_perception.models.dood.unet0d import UNet0D, UNet0DConfig
from ood_perception.models.loading import load_strict

C = 64


# --- transcription of the official code ------------------------------------------------------

def official_timestep_embedding(timesteps: torch.Tensor, dim: int) -> torch.Tensor:
    half = dim // 2
    freqs = torch.exp(-math.log(10000) * torch.arange(0, half, dtype=torch.float32) / half)
    args = timesteps[:, None].float() * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


class OfficialResBlock(nn.Module):
    def __init__(self, channels: int, emb_channels: int, out_channels: int):
        super().__init__()
        self.in_layers = nn.Sequential(nn.GroupNorm(32, channels), nn.SiLU(),
                                       nn.Linear(channels, out_channels))
        self.emb_layers = (nn.Sequential(nn.SiLU(), nn.Linear(emb_channels, out_channels))
                           if emb_channels > 0 else nn.Identity())
        self.out_layers = nn.Sequential(nn.GroupNorm(32, out_channels), nn.SiLU(),
                                        nn.Dropout(0.0), nn.Linear(out_channels, out_channels))
        self.skip_connection = (nn.Identity() if out_channels == channels
                                else nn.Linear(channels, out_channels))

    def forward(self, x, emb):
        h = self.in_layers(x)
        h = h + self.emb_layers(emb).type(h.dtype)
        return self.skip_connection(x) + self.out_layers(h)


class OfficialUNet0D(nn.Module):
    """`UNet0D(in, model, out, channel_mult, num_middle_blocks, timestep_embedding_mode)`."""

    def __init__(self, in_channels, model_channels, channel_mult, num_middle_blocks, mode):
        super().__init__()
        self.model_channels = model_channels
        fn, block_mode = mode.split("+")
        if fn == "periodic":
            self.embed = official_timestep_embedding
            self.time_embed = nn.Sequential(nn.Linear(model_channels, model_channels), nn.SiLU(),
                                            nn.Linear(model_channels, model_channels))
        else:
            self.embed = lambda t, dim: t.unsqueeze(1).expand(-1, dim).float()
            self.time_embed = nn.Sequential(nn.Linear(model_channels, model_channels))
        emb = -model_channels if block_mode == "identity" else model_channels
        self.input_blocks = nn.ModuleList()
        chans, ch = [], in_channels
        for _ in channel_mult:
            self.input_blocks.append(nn.Sequential(OfficialResBlock(ch, emb, model_channels)))
            ch = model_channels
            chans.append(ch)
        self.middle_blocks = nn.ModuleList(
            nn.Sequential(OfficialResBlock(ch, emb, ch)) for _ in range(num_middle_blocks))
        self.output_blocks = nn.ModuleList()
        for _ in channel_mult:
            self.output_blocks.append(
                nn.Sequential(OfficialResBlock(ch + chans.pop(), emb, model_channels)))
        self.out = nn.Sequential(nn.GroupNorm(32, ch), nn.SiLU(),
                                 nn.Linear(model_channels, in_channels))

    def forward(self, x, timesteps):
        emb = self.time_embed(self.embed(timesteps, self.model_channels).to(x.dtype))
        hs, h = [], x
        for module in self.input_blocks:
            h = module[0](h, emb)
            hs.append(h)
        for module in self.middle_blocks:
            h = module[0](h, emb)
        for module in self.output_blocks:
            h = module[0](torch.cat([h, hs.pop()], dim=1), emb)
        return self.out(h)


def official_eps_cos(denoiser, x_start, steps, noises, num_steps_in_parallel=2):
    """`calc_eps_cosine_loop` with `noises` [len(steps), N, C] instead of torch.randn; the
    steps processed in descending order, `num_steps_in_parallel` at a time. -> ([N], [N, T])."""
    betas = np.linspace(1e-4, 0.02, 1000)
    abar = torch.from_numpy(np.cumprod(1.0 - betas, axis=0)).float()
    sqrt_abar, sqrt_1m = torch.sqrt(abar).float(), torch.sqrt(1.0 - abar).float()
    n = x_start.shape[0]
    steps = sorted(steps, reverse=True)
    flat = noises.reshape(len(steps) * n, -1)
    chunks = [steps[i:i + num_steps_in_parallel] for i in range(0, len(steps),
                                                                num_steps_in_parallel)]
    repeated = x_start.repeat(num_steps_in_parallel, 1)
    t_all = torch.tensor([t for chunk in chunks for t in chunk for _ in range(n)])
    terms, done = [], 0
    for chunk in chunks:
        noise = flat[done * n:(done + len(chunk)) * n]
        t = t_all[done * n:(done + len(chunk)) * n]
        x0 = repeated[:len(chunk) * n]
        done += len(chunk)
        x_t = sqrt_abar[t][:, None] * x0 + sqrt_1m[t][:, None] * noise
        pred = -denoiser(x_t, t)
        cos = (noise * pred).sum(-1, keepdim=True) / (noise.norm(dim=-1, keepdim=True)
                                                       * pred.norm(dim=-1, keepdim=True))
        terms.extend(cos.mean(-1).split(n))
    terms = torch.stack(terms, dim=1)
    return terms.sum(dim=1), terms


# --- helpers ---------------------------------------------------------------------------------

def randomized(module: nn.Module, seed: int) -> nn.Module:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for tensor in module.state_dict().values():
            if tensor.is_floating_point():
                tensor.copy_(torch.randn(tensor.shape, generator=generator) * 0.2)
    return module.eval()


def official_model(mode: str = "periodic+embed", levels: int = 3, middle: int = 2,
                   seed: int = 0) -> OfficialUNet0D:
    return randomized(OfficialUNet0D(C, C, (1,) * levels, middle, mode), seed)


def official_state(denoiser: nn.Module, seed: int = 1, queue: int = 4
                   ) -> dict[str, torch.Tensor]:
    """An official `*_diff.pth` state: normalisation queues and buffers + the denoiser."""
    generator = torch.Generator().manual_seed(seed)
    mins = torch.randn(queue, C, generator=generator) - 2
    maxs = torch.randn(queue, C, generator=generator) + 2
    shift, scale = shift_and_scale(mins.amin(0), maxs.amax(0))
    state = {"normalization.mins": mins, "normalization.maxs": maxs,
             "normalization.means": torch.randn(queue, C, generator=generator),
             "normalization.stds": torch.rand(queue, C, generator=generator),
             "normalization.queue_ptr": torch.zeros(1, dtype=torch.long),
             "normalization.min": mins.amin(0), "normalization.max": maxs.amax(0),
             "normalization.mean": torch.zeros(C), "normalization.std": torch.ones(C),
             "normalization.shift": shift, "normalization.scale": scale}
    state.update({f"denoiser.{k}": v for k, v in denoiser.state_dict().items()})
    return state


def ours_from(state: dict[str, torch.Tensor]) -> DiffusionModel:
    converted = convert_diffusion_state(state)
    model = DiffusionModel(diffusion_config(converted))
    load_strict(model, converted, "official state")
    return model.eval()


# --- tests -----------------------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["periodic+embed", "scalar+identity"])
def test_denoiser_matches_the_official_unet0d(mode: str) -> None:
    official = official_model(mode, levels=3, middle=2)
    model = ours_from(official_state(official))
    assert model.denoiser.cfg == UNet0DConfig(C, C, levels=3, middle_blocks=2,
                                              time_embedding=mode.split("+")[0],
                                              block_time_layers=mode.endswith("embed"))
    x = torch.randn(40, C)
    t = torch.randint(0, 1000, (40,))
    with torch.no_grad():
        torch.testing.assert_close(model.denoiser(x, t), official(x, t), atol=1e-6, rtol=1e-5)
        # Features with leading dims and one time step per group give the same rows.
        grouped = model.denoiser(x.view(4, 10, C), t.view(4, 10)[:, :1])
        flat = official(x, t.view(4, 10)[:, :1].expand(4, 10).reshape(-1))
    torch.testing.assert_close(grouped.reshape(40, C), flat, atol=1e-6, rtol=1e-5)


def test_official_init_zeroes_the_last_layers_so_the_cosine_needs_random_weights() -> None:
    denoiser = UNet0D(UNet0DConfig(C, C, levels=2, middle_blocks=1))
    with torch.no_grad():
        out = denoiser(torch.randn(5, C), torch.zeros(5, dtype=torch.long))
    assert (out == 0).all()


@pytest.mark.parametrize("features", [24, 100])
def test_score_matches_calc_eps_cosine_loop_with_the_same_noise(features: int) -> None:
    """24 features: each its own bank vector; 100: vector i mod 32, as documented."""
    official = official_model(seed=2).double()
    model = ours_from(official_state(official, seed=3)).double()
    cfg = DiffusionScoreConfig(timesteps=5, noise_seed=7, noise_vectors=32)
    score = DiffusionScore(cfg, C).double()
    raw = torch.randn(2, features, C, dtype=torch.float64) * 3
    with torch.no_grad():
        ours = score(model, raw)
        for b in range(2):
            x0 = model.normalization(raw[b])
            # The official loop draws noise for the steps in descending order.
            noise = score.noise_for(features).flip(0)
            expected, _ = official_eps_cos(official, x0, list(range(5)), noise)
            torch.testing.assert_close(ours[b], expected, atol=1e-6, rtol=1e-6)


def test_eq8_weights_each_step_by_its_noise_level() -> None:
    official = official_model(seed=4).double()
    model = ours_from(official_state(official, seed=5)).double()
    plain = DiffusionScore(DiffusionScoreConfig(timesteps=4), C).double()
    eq8 = DiffusionScore(DiffusionScoreConfig(timesteps=4, weighting="eq8"), C).double()
    raw = torch.randn(1, 30, C, dtype=torch.float64)
    with torch.no_grad():
        _, terms = official_eps_cos(official, model.normalization(raw[0]), [0, 1, 2, 3],
                                    plain.noise_for(30).flip(0))
        weights = DDPMSchedule.linear().sqrt_one_minus_alphas_cumprod[[3, 2, 1, 0]].double()
        torch.testing.assert_close(eq8(model, raw)[0], (terms * weights).sum(1), atol=1e-6,
                                   rtol=1e-6)
        torch.testing.assert_close(plain(model, raw)[0], terms.sum(1), atol=1e-6, rtol=1e-6)
    assert weights[0] > 2 * weights[-1]  # sqrt(1 - abar_t) grows with t


def test_noise_bank_is_seeded_and_part_of_the_weights() -> None:
    a = DiffusionScore(DiffusionScoreConfig(timesteps=3, noise_seed=1), C)
    b = DiffusionScore(DiffusionScoreConfig(timesteps=3, noise_seed=1), C)
    c = DiffusionScore(DiffusionScoreConfig(timesteps=3, noise_seed=2), C)
    assert torch.equal(a.noise, b.noise) and not torch.equal(a.noise, c.noise)
    assert set(a.state_dict()) == {"noise"}
    model = randomized(DiffusionModel(UNet0DConfig(C, C, levels=2, middle_blocks=1)), 0)
    raw = torch.randn(1, 10, C)
    with torch.no_grad():
        assert torch.equal(a(model, raw), a(model, raw))


def test_normalisation_follows_the_official_shift_and_scale() -> None:
    official = official_model(seed=6)
    state = official_state(official, seed=7)
    minimum, maximum = state["normalization.min"], state["normalization.max"]
    model = ours_from(state)
    torch.testing.assert_close(model.normalization.shift, (minimum + maximum) / 2)
    assert torch.allclose(model.normalization.scale, ((maximum - minimum) / 2).max())
    # Without stored shift/scale they come from the min/max queues, as the official loader does.
    del state["normalization.shift"], state["normalization.scale"], state["normalization.min"]
    rebuilt = ours_from(state)
    torch.testing.assert_close(rebuilt.normalization.shift, model.normalization.shift)
    torch.testing.assert_close(rebuilt.normalization.scale, model.normalization.scale)


def test_conversion_drops_the_statistic_queues_by_name_and_refuses_strangers() -> None:
    state = official_state(official_model(seed=8))
    converted = convert_diffusion_state(state)
    assert not set(NORMALIZATION_TRAINING_ONLY) & set(converted)
    assert {"normalization.shift", "normalization.scale"} <= set(converted)
    with pytest.raises(CheckpointError, match="unexpected keys.*optimizer"):
        convert_diffusion_state({**state, "optimizer.lr": torch.zeros(1)})
    broken = {k: v for k, v in state.items() if not k.startswith("normalization.s")}
    del broken["normalization.mins"]
    with pytest.raises(CheckpointError, match="neither"):
        convert_diffusion_state(broken)
    with pytest.raises(CheckpointError, match="no denoiser"):
        diffusion_config({"normalization.shift": torch.zeros(C)})


def test_our_normalisation_state_is_the_official_layout() -> None:
    state = official_normalization_state(-torch.ones(C), torch.arange(C).float(), torch.zeros(C),
                                         torch.ones(C))
    official = official_state(official_model(seed=9))
    assert {k for k in state} == {k for k in official if k.startswith("normalization.")}
    assert state["normalization.mins"].shape == (1, C)
    assert torch.allclose(state["normalization.scale"], torch.full((C,), (C - 1 + 1) / 2))


def test_score_config_refuses_what_cannot_work() -> None:
    with pytest.raises(ConfigurationError, match="timesteps"):
        DiffusionScoreConfig(timesteps=0)
    with pytest.raises(ConfigurationError, match="weighting"):
        DiffusionScoreConfig(weighting="sqrt")
    with pytest.raises(ConfigurationError, match="multiple of 32"):
        UNet0DConfig(in_channels=48, model_channels=48)


@pytest.mark.parametrize(("ft_size", "levels", "middle", "mode", "expected"), [
    # get_diffusion_model defaults: channel_mult (1,) * 6, 3 middle blocks, periodic+embed
    (768, 6, 3, "periodic+embed", "SEGMENTER_B_DENOISER"),
    pytest.param(1024, 6, 3, "periodic+embed", "SETR_L_DENOISER", marks=pytest.mark.slow),
    # setr_vit-l_ade20k.py: channel_mult (1,) * 8, 4 middle blocks, scalar+identity
    pytest.param(1024, 8, 4, "scalar+identity", "SETR_L_ADE20K_DENOISER",
                 marks=pytest.mark.slow),
])
def test_the_releases_denoiser_layouts_are_the_builders_defaults(ft_size, levels, middle, mode,
                                                                 expected) -> None:
    """Built as the releases' configs build them (configs/models/*.py `DiffusionSetupHook`,
    denoiser channels = feature size), the official layout is read as the registry builder's
    default denoiser, which --random-init builds."""
    from ood_perception.models.dood import build

    official = OfficialUNet0D(ft_size, ft_size, (1,) * levels, middle, mode)
    state = {f"denoiser.{k}": v for k, v in official.state_dict().items()}
    state.update({"normalization.shift": torch.zeros(ft_size),
                  "normalization.scale": torch.ones(ft_size)})
    default = getattr(build, expected)
    assert diffusion_config(state) == default
    load_strict(DiffusionModel(default), state, expected)
