"""detectron2-style ResNet: official key names, shapes, and the stride placement."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ood_perception.models.backbones.resnet import ResNet, ResNetConfig

# detectron2 R-50 has 53 convolutions (stem, 16 blocks x 3, 4 shortcuts), each with 4 norm
# buffers.
R50_KEYS = 53 * 5


def test_r50_has_detectron2_names_and_counts():
    keys = ResNet(ResNetConfig()).state_dict().keys()
    assert len(keys) == R50_KEYS
    for key in ("stem.conv1.weight", "stem.conv1.norm.running_var", "res2.0.shortcut.weight",
                "res2.2.conv3.norm.bias", "res4.5.conv2.weight", "res5.0.shortcut.norm.weight"):
        assert key in keys
    assert "res3.1.shortcut.weight" not in keys


def test_feature_strides_and_channels():
    model = ResNet(ResNetConfig()).eval()
    with torch.no_grad():
        outs = model(torch.randn(1, 3, 64, 96))
    assert [tuple(o.shape) for o in outs] == [
        (1, 256, 16, 24), (1, 512, 8, 12), (1, 1024, 4, 6), (1, 2048, 2, 3)]


def test_stride_in_1x1_moves_the_stride_between_the_first_two_convolutions():
    torch.manual_seed(0)
    msra = ResNet(ResNetConfig(stride_in_1x1=True)).eval()
    torchvision_style = ResNet(ResNetConfig(stride_in_1x1=False)).eval()
    torchvision_style.load_state_dict(msra.state_dict())
    block_a, block_b = msra.res3[0], torchvision_style.res3[0]
    x = torch.randn(1, 256, 16, 16)
    with torch.no_grad():
        first = F.conv2d(x, block_a.conv1.weight, stride=2)
        assert block_a.conv1(x).shape[-1] == 8 and block_b.conv1(x).shape[-1] == 16
        assert torch.allclose(block_a.conv1.norm(first), block_a.conv1(x))
        assert not torch.allclose(block_a(x), block_b(x))
