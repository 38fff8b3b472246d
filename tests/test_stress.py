"""Streams under stress: every node kind and whole networks (an MLP, CNNs, a residual
network), as generated Verilog.

One simulator run per design covers the stall matrix (probabilities 0, 0.5 and 0.9 on
input and output, with long bursts whenever the probability is not 0) and two resets
in the middle of a frame, each followed by every frame again, which must come out
exactly right: nothing lost, duplicated or reordered (reset semantics: docs/robustness.md).
"""

from __future__ import annotations

import numpy as np
import pytest
from amaranth.back import verilog
from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out
from conftest import DIGITS_MODEL, ROOT
from test_hw_sim import NODE_CASES, case_graph, values

import fpgagen
from fpgagen import reference
from fpgagen.hw.emit import verilog_text
from fpgagen.hw.top import stream_ports
from fpgagen.sim import simulate_stream
from fpgagen.simulate import frame_words

STALLS = (0.0, 0.5, 0.9)
FRAMES = 4


def stress_schedule(in_lens: list[int]) -> list[dict]:
    """The 3 x 3 stall matrix, then two mid-frame resets, each followed by a full pass."""
    def mid_frame(f):  # input words up to the middle of frame f
        return sum(in_lens[:f]) + max(1, in_lens[f] // 2)

    matrix = [{"stall_in": a, "stall_out": b, "seed": k}
              for k, (a, b) in enumerate((a, b) for a in STALLS for b in STALLS)]
    return matrix + [
        # reset while frame 1 is half in
        {"stall_in": 0.5, "stall_out": 0.5, "seed": 20, "reset_after": mid_frame(1)},
        {"stall_in": 0.3, "stall_out": 0.3, "seed": 21},
        # reset while frame 2 is half in and the output is held back: the design is full
        {"stall_in": 0.0, "stall_out": 0.9, "seed": 22, "reset_after": mid_frame(2),
         "hold": 40},
        {"stall_in": 0.9, "stall_out": 0.5, "seed": 23},
    ]


def run_stressed(rtl, work, in_words, out_words):
    schedule = stress_schedule([len(f) for f in in_words])
    res = simulate_stream([rtl], work, in_words, out_words, stall_in=0.5, stall_out=0.5,
                          seed=1, stress=schedule)
    assert res.mismatches == 0, res.first_mismatch
    assert res.tlast_errors == 0
    assert len(res.stress) == len(schedule)
    total = sum(map(len, out_words))
    for entry, phase in zip(schedule, res.stress):
        if entry.get("reset_after") is None:
            assert phase["words_out"] == total, phase
        else:
            assert phase["words_out"] < total, phase
    return res


@pytest.mark.parametrize("case", sorted(NODE_CASES))
def test_node_kind_under_the_stall_matrix_and_resets(case, tmp_path):
    graph = case_graph(NODE_CASES[case](np.random.default_rng(11)))
    first, last = stream_ports(graph)
    x = values(np.random.default_rng(2), first.dtype, (FRAMES, first.elems))
    rtl = tmp_path / "fpgagen_top.v"
    rtl.write_text(verilog_text(graph))
    run_stressed(rtl, tmp_path / "sim", frame_words(x, first.dtype, first.lanes),
                 frame_words(reference.run_hw(graph, x), last.dtype, last.lanes))


def _tiny_cnn(tmp_path):
    """Padded depthwise 3x3, then a pointwise layer and a max pool: windows, a vvau,
    an MVAU and a pool, bit-exact through stalls and resets."""
    from onnxgen import save
    from test_cnn import tiny_cnn

    return save(tiny_cnn(conv={"group": 4, "pads": [1, 1, 1, 1]}, channels=(4, 4),
                         size=(6, 7)), tmp_path / "cnn.onnx"), {}


def _small_resnet(tmp_path):
    """Residual blocks: forks, joins and their skip FIFOs under stalls and resets."""
    from fpgagen import zoo, zoo_cnn

    return zoo.export(zoo_cnn.small_resnet(seed=0), tmp_path / "resnet.onnx",
                      exporter="torchscript"), {}


def _digits_cnn(tmp_path):
    return ROOT / "examples" / "digits_cnn" / "digits_cnn.onnx", {}


NETWORKS = {
    "digits_mlp": lambda tmp_path: (DIGITS_MODEL, {"target_fps": 1e6}),
    "tiny_cnn": _tiny_cnn,
    # about 3.5 and 1.5 minutes on 2 cores: make test-all
    "small_resnet": pytest.param(_small_resnet, marks=pytest.mark.slow),
    "digits_cnn": pytest.param(_digits_cnn, marks=pytest.mark.slow),
}


@pytest.mark.parametrize("net", NETWORKS.values(), ids=NETWORKS.keys())
def test_network_under_the_stall_matrix_and_resets(net, tmp_path):
    model, options = net(tmp_path)
    res = fpgagen.build(model, tmp_path / "out", progress=None, **options)
    graph = res.graph
    first, last = stream_ports(graph)
    x = values(np.random.default_rng(3), first.dtype, (FRAMES, first.elems))
    run_stressed(tmp_path / "out" / "rtl" / "fpgagen_top.v", tmp_path / "sim",
                 frame_words(x, first.dtype, first.lanes),
                 frame_words(reference.run_hw(graph, x), last.dtype, last.lanes))


class Passthrough(wiring.Component):
    """A 1-word buffer with a tlast counter; ``sticky`` keeps both through reset."""

    def __init__(self, frame: int, sticky: bool):
        self.frame, self.sticky = frame, sticky
        super().__init__({
            "s_axis_tdata": In(8), "s_axis_tvalid": In(1), "s_axis_tready": Out(1),
            "m_axis_tdata": Out(8), "m_axis_tvalid": Out(1), "m_axis_tready": In(1),
            "m_axis_tlast": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        full = Signal(reset_less=self.sticky)
        data = Signal(8, reset_less=self.sticky)
        pos = Signal(range(self.frame), reset_less=self.sticky)
        m.d.comb += [self.s_axis_tready.eq(~full | self.m_axis_tready),
                     self.m_axis_tvalid.eq(full), self.m_axis_tdata.eq(data),
                     self.m_axis_tlast.eq(pos == self.frame - 1)]
        with m.If(self.s_axis_tvalid & self.s_axis_tready):
            m.d.sync += [data.eq(self.s_axis_tdata), full.eq(1)]
        with m.Elif(self.m_axis_tready):
            m.d.sync += full.eq(0)
        with m.If(self.m_axis_tvalid & self.m_axis_tready):
            m.d.sync += pos.eq(Mux(pos == self.frame - 1, 0, pos + 1))
        return m


@pytest.mark.parametrize("sticky", [False, True])
def test_reset_phase_catches_a_design_that_keeps_state(sticky, tmp_path):
    """The same schedule fails a design whose registers survive reset."""
    frame = 5
    rtl = tmp_path / "fpgagen_top.v"
    rtl.write_text(verilog.convert(Passthrough(frame, sticky), name="fpgagen_top"))
    words = [[(13 * f + k) % 256 for k in range(frame)] for f in range(FRAMES)]
    res = simulate_stream([rtl], tmp_path / "sim", words, words, stall_in=0.5,
                          stall_out=0.5, seed=1, stress=stress_schedule([frame] * FRAMES))
    assert res.ok is (not sticky), (res.mismatches, res.tlast_errors, res.first_mismatch)
    if sticky:
        assert res.first_mismatch is None or res.first_mismatch["phase"] > 11
