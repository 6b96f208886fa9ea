"""UEM heads: GMM log-likelihood against torch.distributions and in fp16, linear head, MLP key
names."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.distributions import Independent, Normal

from ood_perception.models.uem.heads import MLP, GMMSegHead, LinearHead


def gmm_head(classes: int = 3, components: int = 4, dim: int = 8) -> GMMSegHead:
    torch.manual_seed(0)
    head = GMMSegHead(dim, classes, components)
    with torch.no_grad():
        head.means.normal_()
        head.diagonal.uniform_(0.2, 1.5)
        head.feat_norm.weight.normal_(1.0, 0.1)
        head.mask_norm.bias.normal_()
    return head.eval()


def test_gmm_log_prob_equals_torch_distributions() -> None:
    head = gmm_head()
    x = F.normalize(torch.randn(50, 8), dim=-1)
    got = head.component_log_prob(x)
    dist = Independent(Normal(F.normalize(head.means, dim=-1), head.diagonal), 1)
    expected = dist.log_prob(x[:, None, None, :])
    assert got.shape == (50, 3, 4)
    torch.testing.assert_close(got, expected, atol=1e-3, rtol=1e-5)


def test_gmm_forward_is_mask_norm_of_best_component() -> None:
    head = gmm_head()
    x = torch.randn(2, 8, 5, 6)
    logits = head(x)
    feats = F.normalize(head.feat_norm(x.permute(0, 2, 3, 1)), dim=-1)
    dist = Independent(Normal(F.normalize(head.means, dim=-1), head.diagonal), 1)
    best = dist.log_prob(feats[..., None, None, :]).amax(-1)
    expected = head.mask_norm(best).permute(0, 3, 1, 2)
    assert logits.shape == (2, 3, 5, 6)
    torch.testing.assert_close(logits, expected, atol=1e-4, rtol=1e-4)


def test_gmm_log_prob_in_fp16_keeps_features_near_a_mean() -> None:
    """Trained heads have small diagonals and features close to a mean: the difference-then-
    scale form stays within fp16's rounding there, where x^2 - 2 x mean + mean^2 cancels."""
    head = gmm_head(classes=2, components=3, dim=64)
    with torch.no_grad():
        head.diagonal.uniform_(0.01, 0.03)
    means = F.normalize(head.means, dim=-1).reshape(-1, 64)
    x = F.normalize(means[torch.arange(40) % 6] + 0.01 * torch.randn(40, 64), dim=-1)
    reference = head.double().component_log_prob(x.double())
    half = head.half().component_log_prob(x.half()).double()
    assert torch.isfinite(half).all()
    # The best component of each feature (what the score uses), to fp16's relative precision.
    best, best_half = reference.amax(-1), half.amax(-1)
    assert ((best_half - best).abs() / best.abs()).max() < 2e-3
    assert (half.flatten(1).argmax(-1) == reference.flatten(1).argmax(-1)).all()


def test_linear_head_is_per_pixel_linear() -> None:
    head = LinearHead(8, 19)
    x = torch.randn(2, 8, 3, 4)
    out = head(x)
    expected = torch.einsum("bchw,kc->bkhw", x, head._head.weight) + head._head.bias[:, None, None]
    torch.testing.assert_close(out, expected)


def test_mlp_uses_official_key_names() -> None:
    keys = set(MLP(768, 512, 256, num_layers=3).state_dict())
    assert keys == {f"_layers.{i}.{p}" for i in (0, 2, 4) for p in ("weight", "bias")}
