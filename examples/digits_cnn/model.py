"""A small 4-bit CNN for scikit-learn's 8x8 digits.

Input (N, 1, 8, 8) with pixels in [0, 1] (raw value / 16). Inside the model:

    QuantIdentity          4-bit unsigned input quantizer (learned scale, max 1.0 at start)
    QuantConv2d 1->8,  3x3, padding 1   BatchNorm2d  QuantReLU 4-bit     8x8x8
    QuantConv2d 8->16, 3x3, padding 1   BatchNorm2d  QuantReLU 4-bit     8x8x16
    MaxPool2d 2x2                                                         4x4x16
    QuantConv2d 16->16, 3x3, no padding BatchNorm2d  QuantReLU 4-bit     2x2x16
    flatten, QuantLinear 64->10 (4-bit weights, float bias)              scores

Weights are 4-bit signed (narrow range, -7..7) with a per-output-channel scale in the
convolutions and a per-tensor scale in the head. The activations are multi-bit and
unsigned, so the zero padding of the convolutions is a representable value (0); a
binarized (+1/-1) activation could not be padded with zeros.
"""

from __future__ import annotations

from brevitas.nn import QuantConv2d, QuantIdentity, QuantLinear, QuantReLU
from brevitas.quant import (
    Int8WeightPerChannelFloat,
    Int8WeightPerTensorFloat,
    Uint8ActPerTensorFloat,
    Uint8ActPerTensorFloatMaxInit,
)
from torch import nn

INPUT_SHAPE = (1, 1, 8, 8)
NUM_CLASSES = 10
BITS = 4
#: (output channels, padding) of the three 3x3 convolutions; the max pool follows the second
CONVS = ((8, 1), (16, 1), (16, 0))
POOL_AFTER = 1


class DigitsCNN(nn.Module):
    """The digits CNN. ``forward`` takes (N, 1, 8, 8) float in [0, 1]."""

    def __init__(self, convs=CONVS, num_classes=NUM_CLASSES, bits=BITS):
        super().__init__()
        self.input_quant = QuantIdentity(act_quant=Uint8ActPerTensorFloatMaxInit,
                                         bit_width=bits, max_val=1.0)
        layers: list[nn.Module] = []
        channels, size = INPUT_SHAPE[1], INPUT_SHAPE[2]
        for i, (out_channels, padding) in enumerate(convs):
            layers += [
                QuantConv2d(channels, out_channels, 3, padding=padding, bias=False,
                            weight_quant=Int8WeightPerChannelFloat, weight_bit_width=bits),
                nn.BatchNorm2d(out_channels),
                QuantReLU(act_quant=Uint8ActPerTensorFloat, bit_width=bits),
            ]
            channels, size = out_channels, size + 2 * padding - 2
            if i == POOL_AFTER:
                layers.append(nn.MaxPool2d(2))
                size //= 2
        self.features = nn.Sequential(*layers)
        self.head = QuantLinear(channels * size * size, num_classes, bias=True,
                                weight_quant=Int8WeightPerTensorFloat, weight_bit_width=bits)

    def forward(self, x):
        x = self.features(self.input_quant(x))
        return self.head(x.flatten(1))
