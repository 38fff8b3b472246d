"""Small convolutional test networks with the block types of deployed FPGA CNNs.

* ``small_resnet()``: resnet18_4w4a's blocks (``brevitas_examples.bnn_pynq``): 3x3 and
  1x1 convolutions with strides 1 and 2 and padding, BatchNorm, QuantReLU, residual adds
  of two tensors sharing one quantizer scale, a projection shortcut, and
  ``TruncAvgPool2d`` global pooling, scaled down to simulate in seconds. The block is
  written out here (equivalent to ``QuantBasicBlock``) without its QuantTensor
  assertion, which the dynamo exporter cannot trace.
* ``small_mobilenet()``: MobileNet's depthwise-separable blocks (a 3x3 depthwise
  convolution, BatchNorm, ReLU, then a 1x1 pointwise convolution), strides 1 and 2, at
  4w4a, ending in global average pooling and a linear head.
* ``resnet18_4w4a()``: the full network from brevitas_examples with an input quantizer
  in front (the original assumes 8-bit inputs and has none).

Weights are seeded random and BatchNorm statistics calibrated on seeded inputs
(``zoo.calibrate``), like ``zoo.bnn_pynq``. torch and brevitas are imported inside.
"""

from __future__ import annotations

from pathlib import Path

from . import zoo


def _block_class():
    from brevitas import nn as qnn
    from torch import nn

    class ResidualBlock(nn.Module):
        """conv3x3-BN-ReLU-conv3x3-BN-ReLU(shared) + shortcut, then ReLU (4-bit)."""

        def __init__(self, cin, cout, stride, shared_act, bits):
            super().__init__()
            conv = dict(bias=False, weight_bit_width=bits)
            self.conv1 = qnn.QuantConv2d(cin, cout, 3, stride=stride, padding=1, **conv)
            self.bn1 = nn.BatchNorm2d(cout)
            self.relu1 = qnn.QuantReLU(bit_width=bits, return_quant_tensor=True)
            self.conv2 = qnn.QuantConv2d(cout, cout, 3, padding=1, **conv)
            self.bn2 = nn.BatchNorm2d(cout)
            self.shortcut = None
            if stride != 1 or cin != cout:
                self.shortcut = nn.Sequential(
                    qnn.QuantConv2d(cin, cout, 1, stride=stride, **conv),
                    nn.BatchNorm2d(cout),
                    qnn.QuantReLU(bit_width=bits, return_quant_tensor=True))
                shared_act = self.shortcut[-1]
            self.relu2 = shared_act  # one scale on both sides of the add
            self.relu_out = qnn.QuantReLU(bit_width=bits, return_quant_tensor=True)

        def forward(self, x):
            out = self.relu1(self.bn1(self.conv1(x)))
            out = self.relu2(self.bn2(self.conv2(out)))
            if self.shortcut is not None:
                x = self.shortcut(x)
            return self.relu_out(out + x)

    return ResidualBlock


def small_resnet(*, seed: int = 0, size: int = 8, channels=(8, 16), bits: int = 4,
                 calib_samples: int = 32):
    """A two-block residual network at ``bits``w``bits``a on ``size``x``size``x3 inputs."""
    import torch
    from brevitas import nn as qnn
    from brevitas.quant import Int32Bias, TruncTo8bit
    from torch import nn

    block = _block_class()
    torch.manual_seed(seed)

    class SmallResNet(nn.Module):
        def __init__(self):
            super().__init__()
            c1, c2 = channels
            self.inp = qnn.QuantIdentity(bit_width=8, return_quant_tensor=True)
            self.conv = qnn.QuantConv2d(3, c1, 3, padding=1, bias=False, weight_bit_width=8)
            self.bn = nn.BatchNorm2d(c1)
            self.relu = qnn.QuantReLU(bit_width=bits, return_quant_tensor=True)
            self.block1 = block(c1, c1, 1, self.relu, bits)
            self.block2 = block(c1, c2, 2, self.block1.relu_out, bits)
            self.pool = qnn.TruncAvgPool2d(kernel_size=size // 2, trunc_quant=TruncTo8bit,
                                           float_to_int_impl_type="FLOOR")
            self.fc = qnn.QuantLinear(c2, 10, bias=True, weight_bit_width=8,
                                      bias_quant=Int32Bias)  # as resnet18_4w4a's head

        def forward(self, x):
            x = self.relu(self.bn(self.conv(self.inp(x))))
            x = self.pool(self.block2(self.block1(x)))
            return self.fc(x.view(x.size(0), -1))

    model = SmallResNet()
    return _finish(model, (1, 3, size, size), seed, calib_samples, "small_resnet")


def small_mobilenet(*, seed: int = 0, size: int = 8, channels=(8, 16), bits: int = 4,
                    calib_samples: int = 32):
    """A two-block depthwise-separable network at ``bits``w``bits``a."""
    import torch
    from brevitas import nn as qnn
    from brevitas.quant import TruncTo8bit
    from torch import nn

    torch.manual_seed(seed)
    conv = dict(bias=False, weight_bit_width=bits)

    def act():
        return qnn.QuantReLU(bit_width=bits, return_quant_tensor=True)

    def separable(cin, cout, stride):
        return [qnn.QuantConv2d(cin, cin, 3, stride=stride, padding=1, groups=cin, **conv),
                nn.BatchNorm2d(cin), act(),
                qnn.QuantConv2d(cin, cout, 1, **conv), nn.BatchNorm2d(cout), act()]

    c1, c2 = channels
    model = nn.Sequential(
        qnn.QuantIdentity(bit_width=8, return_quant_tensor=True),
        qnn.QuantConv2d(3, c1, 3, padding=1, bias=False, weight_bit_width=8),
        nn.BatchNorm2d(c1), act(),
        *separable(c1, c1, 1), *separable(c1, c2, 2),
        qnn.TruncAvgPool2d(kernel_size=size // 2, trunc_quant=TruncTo8bit,
                           float_to_int_impl_type="FLOOR"),
        nn.Flatten(),
        qnn.QuantLinear(c2, 10, bias=True, weight_bit_width=8))
    return _finish(model, (1, 3, size, size), seed, calib_samples, "small_mobilenet")


def resnet18_4w4a(*, seed: int = 0, calib_samples: int = 8):
    """brevitas_examples' resnet18_4w4a (CIFAR-10, 32x32) behind an 8-bit input quantizer."""
    import torch
    from brevitas import nn as qnn
    from brevitas_examples.bnn_pynq.models import model_with_cfg
    from torch import nn

    torch.manual_seed(seed)
    net, _ = model_with_cfg("resnet18_4w4a", pretrained=False)
    model = nn.Sequential(qnn.QuantIdentity(bit_width=8, return_quant_tensor=True), net)
    return _finish(model, (1, 3, 32, 32), seed, calib_samples, "resnet18_4w4a")


def _finish(model, shape, seed, calib_samples, name):
    import torch

    zoo._randomise(model, torch.Generator().manual_seed(seed))
    zoo.calibrate(model, zoo.sample_inputs(shape, calib_samples, seed))
    model.input_shape = shape
    model.zoo_name = name
    return model


#: the networks above by name (bench/run.py --nets)
NETWORKS = ("small_resnet", "small_mobilenet", "resnet18_4w4a")


def export_named(name: str, directory: Path) -> Path:
    """A zoo network by name, seeded 0, exported to QONNX in ``directory``: BNN-PYNQ's
    (``cnv_1w1a``, ``tfc_2w2a``, ...) or this module's. The dynamo exporter, but
    TorchScript for resnet18_4w4a: under ``torch.export`` its residual adds fail
    brevitas' "Perform add among QuantTensors" check (torch 2.13)."""
    model = globals()[name](seed=0) if name in NETWORKS else zoo.bnn_pynq(name, seed=0)
    exporter = "torchscript" if name == "resnet18_4w4a" else "dynamo"
    return zoo.export(model, Path(directory) / f"{name}.onnx", exporter=exporter)

