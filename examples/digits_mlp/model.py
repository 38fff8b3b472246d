"""Binarized MLP for scikit-learn's 8x8 digits, built like BNN-PYNQ's TFC.

Input (N, 1, 8, 8) with pixels in [0, 1] (raw value / 16). Inside the model:
flatten, ``2*x - 1``, binary (bipolar) input quantizer, then

    QuantLinear 64->40 (1-bit weights, no bias), BatchNorm1d(40), binary act
    QuantLinear 40->24 (1-bit weights, no bias), BatchNorm1d(24), binary act
    QuantLinear 24->10 (1-bit weights, no bias), TensorNorm (per-tensor affine)

The quantizers are BNN-PYNQ's own (``CommonWeightQuant`` / ``CommonActQuant``),
so weights and hidden activations are in {-1, +1} (scale 1.0).
"""

from __future__ import annotations

import torch
from brevitas.nn import QuantIdentity, QuantLinear
from torch import nn

try:  # the reference building blocks, as BNN-PYNQ's FC uses them
    from brevitas_examples.bnn_pynq.models.common import CommonActQuant, CommonWeightQuant
    from brevitas_examples.bnn_pynq.models.tensor_norm import TensorNorm
except ImportError:  # pragma: no cover - brevitas_examples ships with brevitas
    from brevitas.core.bit_width import BitWidthImplType
    from brevitas.core.quant import QuantType
    from brevitas.core.restrict_val import FloatToIntImplType, RestrictValueType
    from brevitas.core.scaling import ScalingImplType
    from brevitas.core.zero_point import ZeroZeroPoint
    from brevitas.inject import ExtendedInjector
    from brevitas.quant.solver import ActQuantSolver, WeightQuantSolver
    from dependencies import value

    class _CommonQuant(ExtendedInjector):
        bit_width_impl_type = BitWidthImplType.CONST
        scaling_impl_type = ScalingImplType.CONST
        restrict_scaling_type = RestrictValueType.FP
        zero_point_impl = ZeroZeroPoint
        float_to_int_impl_type = FloatToIntImplType.ROUND
        scaling_per_output_channel = False
        narrow_range = True
        signed = True

        @value
        def quant_type(bit_width):
            if bit_width is None:
                return QuantType.FP
            if bit_width == 1:
                return QuantType.BINARY
            return QuantType.INT

    class CommonWeightQuant(_CommonQuant, WeightQuantSolver):
        scaling_const = 1.0

    class CommonActQuant(_CommonQuant, ActQuantSolver):
        min_val = -1.0
        max_val = 1.0

    class TensorNorm(nn.Module):
        """Per-tensor affine with running statistics (BNN-PYNQ's TensorNorm)."""

        def __init__(self, eps=1e-4, momentum=0.1):
            super().__init__()
            self.eps = eps
            self.momentum = momentum
            self.weight = nn.Parameter(torch.ones(1))
            self.bias = nn.Parameter(torch.zeros(1))
            self.register_buffer("running_mean", torch.zeros(1))
            self.register_buffer("running_var", torch.ones(1))

        def forward(self, x):
            if self.training:
                mean = x.mean()
                unbias_var = x.var(unbiased=True)
                biased_var = x.var(unbiased=False)
                self.running_mean = ((1 - self.momentum) * self.running_mean
                                     + self.momentum * mean.detach())
                self.running_var = ((1 - self.momentum) * self.running_var
                                    + self.momentum * unbias_var.detach())
                inv_std = 1 / (biased_var + self.eps).pow(0.5)
                return (x - mean) * inv_std * self.weight + self.bias
            return ((x - self.running_mean) / (self.running_var + self.eps).pow(0.5)
                    * self.weight + self.bias)


INPUT_SHAPE = (1, 1, 8, 8)
HIDDEN = (40, 24)
NUM_CLASSES = 10


class DigitsMLP(nn.Module):
    """The demo network. ``forward`` takes (N, 1, 8, 8) float in [0, 1]."""

    def __init__(self, hidden=HIDDEN, num_classes=NUM_CLASSES, weight_bit_width=1,
                 act_bit_width=1, in_bit_width=1, dropout=0.0):
        super().__init__()
        self.features = nn.ModuleList()
        self.features.append(QuantIdentity(act_quant=CommonActQuant, bit_width=in_bit_width))
        in_features = INPUT_SHAPE[2] * INPUT_SHAPE[3]
        for out_features in hidden:
            self.features.append(QuantLinear(in_features, out_features, bias=False,
                                             weight_bit_width=weight_bit_width,
                                             weight_quant=CommonWeightQuant))
            self.features.append(nn.BatchNorm1d(out_features))
            self.features.append(QuantIdentity(act_quant=CommonActQuant,
                                               bit_width=act_bit_width))
            if dropout:
                self.features.append(nn.Dropout(dropout))
            in_features = out_features
        self.features.append(QuantLinear(in_features, num_classes, bias=False,
                                         weight_bit_width=weight_bit_width,
                                         weight_quant=CommonWeightQuant))
        self.features.append(TensorNorm())
        for m in self.modules():
            if isinstance(m, QuantLinear):
                nn.init.uniform_(m.weight.data, -1, 1)

    def clip_weights(self, min_val=-1.0, max_val=1.0):
        """Keep the latent float weights in [-1, 1] (BNN-PYNQ's trainer does this)."""
        for m in self.features:
            if isinstance(m, QuantLinear):
                m.weight.data.clamp_(min_val, max_val)

    def forward(self, x):
        x = x.view(x.shape[0], -1)
        x = 2.0 * x - torch.tensor([1.0], device=x.device)
        for m in self.features:
            x = m(x)
        return x
