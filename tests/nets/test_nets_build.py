import pytest
import torch

from holdsgm.errors import ConfigError, HoldsgmError
from holdsgm.nets import MLP, UNet, build_network, count_parameters


def test_build_known_kinds():
    assert isinstance(build_network("mlp", in_features=2, out_features=2, hidden=8), MLP)
    assert isinstance(build_network("unet", in_channels=1, out_channels=1, image_size=8, channels=8), UNet)


@pytest.mark.parametrize("kind, kwargs, needle", [
    ("resnet", {}, "unknown network kind 'resnet'; choices: mlp, unet"),
    (None, {}, "unknown network kind"),
    ("mlp", {"in_features": 2, "out_features": 2, "widht": 3},
     "'widht'.*accepted: in_features, out_features, hidden"),
    ("mlp", {"in_features": 2}, "needs argument.*out_features"),
    ("mlp", {"in_features": 2, "out_features": 2, "hidden": "64"}, "hidden must be an integer"),
    ("mlp", {"in_features": 2, "out_features": 2, "depth": 0}, "depth must be >= 1"),
    ("mlp", {"in_features": 2, "out_features": 2, "time_embedding": "rope"}, "time_embedding must be one of"),
    ("unet", {"in_channels": 1, "out_channels": 1}, "needs argument.*image_size"),
    ("unet", {"in_channels": 1, "out_channels": 1, "image_size": 8, "channel_mult": []}, "channel_mult"),
    ("unet", {"in_channels": 1, "out_channels": 1, "image_size": 8, "channel_mult": "12"}, "channel_mult"),
    ("unet", {"in_channels": 1, "out_channels": 1, "image_size": 8, "dropout": 2.0}, "dropout"),
    ("unet", {"in_channels": 1, "out_channels": 1, "image_size": 8, "num_heads": 3}, "num_heads"),
    ("unet", {"in_channels": 1, "out_channels": 1, "image_size": 8, "mid_attention": 1}, "mid_attention"),
    ("unet", {"in_channels": 1, "out_channels": 1, "image_size": [8, 8, 8]}, "image_size"),
])
def test_build_errors(kind, kwargs, needle):
    with pytest.raises(ConfigError, match=needle) as e:
        build_network(kind, **kwargs)
    assert isinstance(e.value, HoldsgmError) and "\n" not in str(e.value)


def test_count_parameters():
    net = torch.nn.Linear(3, 4)
    assert count_parameters(net) == 16
    net.bias.requires_grad_(False)
    assert count_parameters(net) == 12 and count_parameters(net, trainable_only=False) == 16


def test_data_and_nets_know_no_sde():
    """holdsgm.data and holdsgm.nets must not import the SDE, sampler or loss packages."""
    import subprocess
    import sys

    code = ("import sys, holdsgm.data, holdsgm.nets; "
            "bad = [m for m in sys.modules if m.split('.')[:2] in (['holdsgm', 'sde'], ['holdsgm', 'samplers'], "
            "['holdsgm', 'losses'])]; assert not bad, bad")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-500:]
