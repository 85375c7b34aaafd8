import pytest
import torch
from torch import nn

from converter import Converter, NotTraceableError, UnsupportedLayerError
from simulator import IFNeuron, simulate
from tests.nets import cnn, inputs, mlp, randomize_bn


def _loader(x):
    return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x), batch_size=16)


def _rate_error(ann, snn, x, T):
    with torch.no_grad():
        target = ann(x)
    rate = simulate(snn, x, T, time_chunk=250).rates()[-1]
    return (rate - target).abs().max().item() / (target.max() - target.min()).item()


@pytest.mark.parametrize("make,shape", [(mlp, (1, 4, 4)), (cnn, (1, 8, 8))])
def test_snn_matches_ann_and_error_falls_with_T(make, shape):
    ann = randomize_bn(make())
    x = inputs(shape, 64)
    snn = Converter(mode="max", dataloader=_loader(x), v_init=0.0, readout="spike_count")(ann)
    err_100, err_1000 = _rate_error(ann, snn, x, 100), _rate_error(ann, snn, x, 1000)
    assert err_1000 <= 0.02, f"rate error {err_1000:.4f} of the ANN's output range at T=1000"
    assert err_1000 <= err_100 / 4, f"error {err_100:.4f} at T=100 vs {err_1000:.4f} at T=1000"


def test_ann_is_left_unchanged():
    ann = randomize_bn(cnn()).train()
    before = {k: v.clone() for k, v in ann.state_dict().items()}
    Converter(mode="99%", dataloader=_loader(inputs((1, 8, 8))))(ann)
    assert ann.training
    assert all(torch.equal(before[k], v) for k, v in ann.state_dict().items())


def test_every_relu_form_becomes_its_own_if_layer():
    class Forms(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1, self.fc2, self.fc3, self.fc4 = (nn.Linear(4, 4) for _ in range(4))
            self.act = nn.ReLU(inplace=True)

        def forward(self, x):
            x = self.act(self.fc1(x))
            x = torch.nn.functional.relu(self.fc2(x))
            x = torch.relu(self.fc3(x))
            return self.act(self.fc4(x).relu())

    snn = Converter(mode="max", dataloader=_loader(torch.rand(32, 4)), readout="spike_count")(Forms())
    layers = [m for m in snn.modules() if isinstance(m, IFNeuron)]
    assert len(layers) == 5
    assert not any(isinstance(m, nn.ReLU) for m in snn.modules())


def test_scales_and_meta_recorded():
    x = inputs((1, 4, 4))
    snn = Converter(mode="max", dataloader=_loader(x), readout="spike_count")(randomize_bn(mlp()))
    meta = snn.meta["ann2snn"]
    assert meta["mode"] == "max" and meta["input_shape"] == [1, 4, 4] and meta["calibration_samples"] == 64
    assert len(meta["lambdas"]) == 4 and meta["output_scale"] == pytest.approx(list(meta["lambdas"].values())[-1])


def test_data_driven_mode_without_dataloader_fails_before_work():
    with pytest.raises(ValueError, match="dataloader"):
        Converter(mode="max", dataloader=None)
    with pytest.raises(TypeError, match="dataloader"):  # a required keyword argument
        Converter(mode="max")


@pytest.mark.parametrize("layer,name", [(nn.GELU(), "GELU"), (nn.MaxPool2d(2), "MaxPool2d"), (nn.Sigmoid(), "Sigmoid")])
def test_unsupported_layer_is_named_with_path_and_type(layer, name):
    ann = nn.Sequential(nn.Conv2d(1, 2, 3), layer, nn.Flatten())
    with pytest.raises(UnsupportedLayerError, match=rf"'1' \({name}\)"):
        Converter(mode="max", dataloader=_loader(inputs((1, 6, 6))))(ann)


def test_maxpool_error_suggests_avgpool():
    ann = nn.Sequential(nn.Conv2d(1, 2, 3), nn.MaxPool2d(2))
    with pytest.raises(UnsupportedLayerError, match="AvgPool2d"):
        Converter(mode="max", dataloader=_loader(inputs((1, 6, 6))))(ann)


def test_untraceable_forward_is_reported():
    class Branchy(nn.Module):
        def forward(self, x):
            return x if x.sum() > 0 else -x

    with pytest.raises(NotTraceableError, match="Branchy"):
        Converter(mode="max", dataloader=_loader(torch.rand(4, 2)))(Branchy())


def test_dead_layer_is_named():
    ann = nn.Sequential(nn.Linear(3, 3), nn.ReLU())
    nn.init.constant_(ann[0].weight, -1.0)
    nn.init.constant_(ann[0].bias, -1.0)
    with pytest.warns(UserWarning, match=r"ReLU '1' \(ReLU\) is zero on all calibration data"):
        Converter(mode="max", dataloader=_loader(torch.rand(8, 3)))(ann)
