"""A small integer-friendly Vision Transformer for scikit-learn's 8x8 digits.

Input (N, 1, 8, 8) with pixels in [0, 1] (raw value / 16); 2x2 patches give 16 tokens.

    QuantIdentity                 4-bit unsigned input quantizer
    QuantConv2d 1->D, 2x2 stride 2 (patch embedding, 4-bit weights)   -> 16 tokens x D
    + position embedding          both quantized by the residual quantizer ``res``
    N encoder blocks:
        x = x + res(MHA(q_ln(LayerNorm(x))))         QuantMultiheadAttention, 4-bit
        x = x + res(fc2(q_gelu(GELU(q_fc1(fc1(q_ln(LayerNorm(x))))))))
    LayerNorm, quantizer, mean over tokens, QuantLinear D->10      scores

``pool="cls"`` puts a class token (quantized by ``res``) in front of the 16 patch
tokens and reads it out at the end instead of the mean.

Every residual branch ends in the one shared quantizer ``res`` (8-bit), so both sides of
each add have one scale and the residual stream is an exact integer sum. The attention
probabilities are quantized with a power-of-two scale (1/2**bits steps). Weights are
4-bit signed, activations 4-bit, except the 8-bit residual stream and GELU input.
"""

from __future__ import annotations

import torch
from brevitas.nn import QuantConv2d, QuantIdentity, QuantLinear, QuantMultiheadAttention
from brevitas.quant import (
    Int8ActPerTensorFloat,
    Int8WeightPerTensorFloat,
    Uint8ActPerTensorFixedPointMaxInit,
    Uint8ActPerTensorFloat,
    Uint8ActPerTensorFloatMaxInit,
)
from torch import nn

INPUT_SHAPE = (1, 1, 8, 8)
NUM_CLASSES = 10
PATCH = 2
DIM = 32
HEADS = 2
MLP = 64
DEPTH = 1
BITS = 4
RES_BITS = 8


def act(bits: int, signed: bool = True) -> QuantIdentity:
    return QuantIdentity(act_quant=Int8ActPerTensorFloat if signed else Uint8ActPerTensorFloat,
                         bit_width=bits, return_quant_tensor=False)


def linear(cin: int, cout: int, bias: bool = True) -> QuantLinear:
    return QuantLinear(cin, cout, bias=bias, weight_quant=Int8WeightPerTensorFloat,
                       weight_bit_width=BITS)


class Block(nn.Module):
    def __init__(self, dim: int, heads: int, mlp: int, res: QuantIdentity):
        super().__init__()
        self.res = res
        self.ln1, self.q_ln1 = nn.LayerNorm(dim), act(BITS)
        self.attn = QuantMultiheadAttention(
            dim, heads, batch_first=True, bias=True,
            in_proj_input_quant=None, in_proj_bias_quant=None, in_proj_weight_bit_width=BITS,
            q_scaled_bit_width=BITS, k_transposed_bit_width=BITS, v_bit_width=BITS,
            attn_output_weights_quant=Uint8ActPerTensorFixedPointMaxInit,
            attn_output_weights_bit_width=BITS, attn_output_weights_max_val=1.0,
            out_proj_input_bit_width=BITS, out_proj_weight_bit_width=BITS)
        self.ln2, self.q_ln2 = nn.LayerNorm(dim), act(BITS)
        self.fc1, self.q_fc1 = linear(dim, mlp), act(RES_BITS)
        self.gelu, self.q_gelu = nn.GELU(), act(BITS, signed=True)
        self.fc2 = linear(mlp, dim)

    def forward(self, x):
        h = self.q_ln1(self.ln1(x))
        x = x + self.res(self.attn(h, h, h, need_weights=False)[0])
        h = self.q_ln2(self.ln2(x))
        h = self.q_gelu(self.gelu(self.q_fc1(self.fc1(h))))
        return x + self.res(self.fc2(h))


class DigitsViT(nn.Module):
    """The digits ViT. ``forward`` takes (N, 1, 8, 8) float in [0, 1]."""

    def __init__(self, dim=DIM, heads=HEADS, mlp=MLP, depth=DEPTH, num_classes=NUM_CLASSES,
                 pool: str = "mean"):
        super().__init__()
        if pool not in ("mean", "cls"):
            raise ValueError(f"pool must be 'mean' or 'cls', not {pool!r}")
        self.pool = pool
        tokens = (INPUT_SHAPE[2] // PATCH) * (INPUT_SHAPE[3] // PATCH)
        if pool == "cls":  # a class token in front, read out at the end
            self.cls = nn.Parameter(torch.randn(1, 1, dim) * 0.1)
            tokens += 1
        self.input_quant = QuantIdentity(act_quant=Uint8ActPerTensorFloatMaxInit,
                                         bit_width=BITS, max_val=1.0)
        self.patch = QuantConv2d(1, dim, PATCH, stride=PATCH, bias=True,
                                 weight_quant=Int8WeightPerTensorFloat, weight_bit_width=BITS)
        self.res = act(RES_BITS)
        self.pos = nn.Parameter(torch.randn(1, tokens, dim) * 0.1)
        self.blocks = nn.ModuleList(Block(dim, heads, mlp, self.res) for _ in range(depth))
        self.ln, self.q_ln = nn.LayerNorm(dim), act(BITS)
        self.head = linear(dim, num_classes)

    def forward(self, x):
        x = self.patch(self.input_quant(x))              # (N, D, 4, 4)
        x = self.res(x.flatten(2).transpose(1, 2))       # (N, 16, D)
        if self.pool == "cls":
            x = torch.cat([self.res(self.cls).expand(x.shape[0], -1, -1), x], dim=1)
        x = x + self.res(self.pos)
        for block in self.blocks:
            x = block(x)
        x = self.q_ln(self.ln(x))
        return self.head(x[:, 0] if self.pool == "cls" else x.mean(dim=1))
