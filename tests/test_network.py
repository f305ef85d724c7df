"""LatentNet: torchvision key names, seeded init, preprocessing of any image mode, predict()."""

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image

from latentzoo.latents import Normalisation
from latentzoo.images import to_rgb
from latentzoo.models.network import LatentNet, resnet_layers


def test_state_dict_loads_into_plain_torchvision_resnet_with_identical_outputs():
    net = LatentNet.create("r18", "distance-rotation", seed=0).eval()
    assert net.fc.out_features == 7
    tv = torchvision.models.resnet18(num_classes=7).eval()
    tv.load_state_dict(net.state_dict(), strict=True)
    x = torch.randn(2, 3, 64, 64)
    torch.testing.assert_close(net(x), tv(x))


def test_seed_fixes_weights_without_touching_global_rng():
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a = LatentNet.create("r18", "distance", seed=5)
    after = torch.rand(1)
    b = LatentNet.create("r18", "distance", seed=5)
    c = LatentNet.create("r18", "distance", seed=6)
    assert torch.equal(before, after)
    assert torch.equal(a.conv1.weight, b.conv1.weight)
    assert not torch.equal(a.conv1.weight, c.conv1.weight)


def test_layer_names_follow_design():
    assert resnet_layers("r18") == ["relu", "layer1.0.relu", "layer1.1.relu", "layer2.0.relu",
                                    "layer2.1.relu", "layer3.0.relu", "layer3.1.relu",
                                    "layer4.0.relu", "layer4.1.relu", "avgpool", "fc"]
    assert len(resnet_layers("r50")) == 1 + 16 + 2
    net = LatentNet.create("r50", "category", n_categories=3)
    modules = dict(net.named_modules())
    assert all(name in modules for name in net.layers)


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "I;16", "CMYK", "1", "F"])
def test_to_rgb_handles_every_mode(mode):
    img = Image.new(mode, (7, 5))
    out = to_rgb(img)
    assert out.mode == "RGB" and out.size == (7, 5)


def test_to_rgb_scales_16_bit_and_composites_alpha_on_white():
    arr16 = np.full((4, 4), 65535, np.uint16)
    img16 = Image.new("I;16", (4, 4))
    img16.frombytes(arr16.tobytes())
    assert np.asarray(to_rgb(img16)).min() == 255
    transparent = Image.new("RGBA", (3, 3), (0, 0, 0, 0))
    assert np.asarray(to_rgb(transparent)).min() == 255


def test_predict_returns_physical_units_and_agrees_across_input_kinds():
    net = LatentNet.create("r18", "distance-translation", seed=0, input_size=32,
                           normalisation=Normalisation({"x": 0.0, "y": 0.1, "z": 2.0},
                                                       {"x": 0.5, "y": 0.5, "z": 1.0}))
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    from_tensor = net.predict(torch.from_numpy(arr))
    from_pil = net.predict([Image.fromarray(a) for a in arr])
    assert set(from_tensor) == {"x", "y", "z"}
    for k in from_tensor:
        np.testing.assert_allclose(from_tensor[k], from_pil[k], atol=1e-4)
    raw = net.eval()(net.preprocess(torch.from_numpy(arr)))[:, 0].detach().numpy()
    np.testing.assert_allclose(from_tensor["z"], raw * 1.0 + 2.0, atol=1e-5)


def test_predict_rejects_wrong_tensor_layout():
    net = LatentNet.create("r18", "distance", input_size=32)
    with pytest.raises(ValueError, match="uint8 tensor N x H x W x 3"):
        net.predict(torch.zeros(2, 3, 32, 32))
