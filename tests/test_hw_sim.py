"""Tier 2: generated Verilog in cocotb (Verilator), random stalls on both stream ends,
every output word compared with the golden model.

Each node kind runs alone as ``fpgagen_top``; whole networks run through the CLI.
The long 1000-frame matrix over the BNN-PYNQ nets is marked ``slow`` (make test-all).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import DIGITS_MODEL, run_cli, zoo_model
from dag_graphs import attention_scores, attention_values, fork_join, prepared
from test_hw_thresholds import offset_thresholds, requant_mvau

from fpgagen import nodes, reference, zoo
from fpgagen.dtypes import BIPOLAR, IntType
from fpgagen.hw.emit import verilog_text
from fpgagen.hw.top import stream_ports
from fpgagen.ir import Graph, Node, Tensor
from fpgagen.nodes import (
    delta,
    dmvau,
    dwc,
    fifo,
    labelselect,
    layernorm,
    mvau,
    offset,
    pool,
    prefix,
    select,
    softmax,
    swg,
    table,
    thresholding,
    vvau,
)
from fpgagen.sim import simulate_stream
from fpgagen.simulate import frame_words, words_values


def single_node_graph(spec) -> Graph:
    t_in = Tensor("x", (spec.in_elems,), spec.in_type)
    t_out = Tensor("y", (spec.out_elems,), spec.out_type)
    return Graph((Node(spec.name, spec, ("x",), ("y",)),), {"x": t_in, "y": t_out},
                 ("x",), ("y",))


def values(rng, dtype, shape):
    if dtype.bipolar:
        return np.where(rng.integers(0, 2, size=shape) > 0, 1, -1)
    return rng.integers(dtype.min, dtype.max + 1, size=shape)


def case_graph(made) -> Graph:
    """A NODE_CASES entry as a top: a spec alone, or a small graph (multi-port kinds)."""
    return made if isinstance(made, Graph) else single_node_graph(made)


def run_node(spec, tmp_path, frames=40, stall=0.5, seed=0):
    return run_graph(case_graph(spec), tmp_path, frames, stall, seed)


def run_graph(graph, tmp_path, frames=40, stall=0.5, seed=0):
    first, last = stream_ports(graph)
    rng = np.random.default_rng(seed)
    x = values(rng, first.dtype, (frames, first.elems))
    want = reference.run_hw(graph, x)
    rtl = tmp_path / "fpgagen_top.v"
    rtl.write_text(verilog_text(graph))
    res = simulate_stream([rtl], tmp_path / "sim",
                          frame_words(x, first.dtype, first.lanes),
                          frame_words(want, last.dtype, last.lanes),
                          stall_in=stall, stall_out=stall, seed=seed)
    assert res.mismatches == 0, res.first_mismatch
    assert res.tlast_errors == 0
    got = words_values(res.out_words, last.dtype, last.lanes)
    assert np.array_equal(got, want)
    return res


def _mvau(rng, mw, mh, it, wt, pe, simd, out):
    w = values(rng, wt, (mh, mw))
    raw = mvau.Spec("mvau", mw, mh, w, it, wt, IntType(32, True), vectors=2)
    if out is None:
        return mvau.Spec("mvau", mw, mh, w, it, wt, raw.acc_type, vectors=2, pe=pe, simd=simd)
    lo, hi = raw.acc_range
    levels = 1 if out.bipolar else out.max - out.min
    t = np.sort(rng.integers(lo, hi + 2, size=(mh, levels)), axis=1)
    return mvau.Spec("mvau", mw, mh, w, it, wt, out, thresholds=t,
                     out_base=0 if out.bipolar else out.min, vectors=2, pe=pe, simd=simd)


def _vvau(rng, channels, positions, it, wt, pe, out, vectors=3):
    w = values(rng, wt, (channels, positions))
    raw = vvau.Spec("vvau", channels, positions, w, it, wt, IntType(32, True), vectors=vectors)
    if out is None:
        return vvau.Spec("vvau", channels, positions, w, it, wt, raw.acc_type,
                         vectors=vectors, pe=pe)
    lo, hi = raw.acc_range
    levels = 1 if out.bipolar else out.max - out.min
    t = np.sort(rng.integers(lo, hi + 2, size=(channels, levels)), axis=1)
    return vvau.Spec("vvau", channels, positions, w, it, wt, out, thresholds=t,
                     out_base=0 if out.bipolar else out.min, vectors=vectors, pe=pe)


def _differential(rng, mw, mh, it, wt, out, *, vectors, pe, lanes, narrow_bits, simd=1
                  ) -> Graph:
    """x -> delta encoder -> differential MVAU (the delta stream's words depend on the
    data, so the encoder is tested through its reader)."""
    plain = _mvau(rng, mw, mh, it, wt, 1, 1, out)
    spec = dmvau.Spec("dmvau", mw, mh, plain.weights, it, wt, plain.out_type, narrow_bits,
                      thresholds=plain.thresholds, out_base=plain.out_base, vectors=vectors,
                      pe=pe, simd=simd)
    enc = delta.Spec("delta", mw, it, narrow_bits, vectors=vectors, lanes=lanes, simd=simd)
    return Graph((Node("delta", enc, ("x",), ("d",)), Node("dmvau", spec, ("d",), ("y",))),
                 {"x": Tensor("x", (enc.in_elems,), it),
                  "d": Tensor("d", (enc.out_elems,), enc.out_type),
                  "y": Tensor("y", (spec.out_elems,), spec.out_type)}, ("x",), ("y",))


NODE_CASES = {
    "mvau_xnor_thresholds": lambda r: _mvau(r, 24, 12, BIPOLAR, BIPOLAR, 4, 8, BIPOLAR),
    "mvau_xnor_raw": lambda r: _mvau(r, 30, 10, BIPOLAR, BIPOLAR, 5, 3, None),
    # a 600-bit popcount: three chunks summed by the template's tree
    "mvau_xnor_wide_popcount": lambda r: _mvau(r, 600, 3, BIPOLAR, BIPOLAR, 1, 600, None),
    "mvau_mac_int": lambda r: _mvau(r, 20, 6, IntType(3, True), IntType(2, True), 3, 5,
                                    IntType(3, False)),
    "mvau_mac_bipolar_weights": lambda r: _mvau(r, 16, 8, IntType(4, False), BIPOLAR, 2, 4,
                                                IntType(2, True)),
    # thresholds that are one row plus per-channel offsets (hw/thresholds.py "offsets")
    "mvau_requant_offsets": lambda r: requant_mvau(r, 16, 8, IntType(4, True),
                                                   IntType(4, True), IntType(8, True),
                                                   pe=2, simd=4, step=(0, 1)),
    "thresholding_offsets": lambda r: thresholding.Spec(
        "thr", 8, IntType(10, True), IntType(6, True),
        offset_thresholds(r, 8, 63, -512, 511), out_base=-32, vectors=3, pe=2),
    "thresholding": lambda r: thresholding.Spec(
        "thr", 8, IntType(6, True), IntType(2, False),
        np.sort(r.integers(-33, 33, size=(8, 3)), axis=1), 0, vectors=3, pe=4),
    "labelselect": lambda r: labelselect.Spec("ls", 10, IntType(5, True), pe=5),
    "dwc_up": lambda r: dwc.Spec("dwc", 24, IntType(3, True), 2, 6),
    "dwc_down": lambda r: dwc.Spec("dwc", 24, IntType(3, True), 8, 2),
    "dwc_general": lambda r: dwc.Spec("dwc", 24, BIPOLAR, 4, 6),
    "fifo": lambda r: fifo.Spec("fifo", 12, IntType(7, False), 3, 4),
    "swg_3x3_padded": lambda r: swg.Spec("swg", 4, 5, 7, 3, 3, IntType(3, True), 1, 1,
                                         1, 1, 1, 1, simd=2),
    "swg_3x3_stride2": lambda r: swg.Spec("swg", 3, 7, 6, 3, 3, BIPOLAR, 2, 2, simd=3),
    "swg_3x3_taps": lambda r: swg.Spec("swg", 2, 6, 5, 3, 3, IntType(3, True), 2, 1,
                                       1, 1, 0, 1, simd=18),  # a whole window per word
    "pool_max_2x2": lambda r: pool.Spec("pool", 4, 4, "max", IntType(4, True),
                                        IntType(4, True), windows=6, pe=2),
    "pool_global_sum": lambda r: pool.Spec("pool", 6, 16, "sum", IntType(3, False),
                                           pool.sum_type(IntType(3, False), 16), pe=1),
    "table_gelu": lambda r: table.Spec(
        "gelu", 6, IntType(5, True), IntType(6, True),
        table.table_from_function(lambda v: v / (1 + np.exp(-1.702 * v)), IntType(5, True),
                                  0.2, IntType(6, True), 0.1), vectors=2, pe=3),
    "softmax_single": lambda r: softmax.Spec(
        "softmax", 8, IntType(6, True), IntType(8, False), softmax.output_shift(8), rows=2,
        pe=2, **softmax.exp_tables(0.1, IntType(6, True), width=12)),
    "softmax_split": lambda r: softmax.Spec(
        "softmax", 6, IntType(7, False), IntType(6, False), softmax.output_shift(6), rows=2,
        **softmax.exp_tables(0.05, IntType(7, False), variant="split", depth=96, width=10,
                             split_bits=3)),
    # position embedding: offsets per element of a frame, read from a ROM (8 words of 3)
    "offset_pos_embedding": lambda r: offset.Spec(
        "pos", 6, IntType(5, True), r.integers(-300, 300, size=24), k=-3, vectors=4, pe=3),
    # a ViT's class token: two vectors in front of each frame (from a ROM), then one
    # kept out of five (the others read and dropped)
    "prefix_class_token": lambda r: prefix.Spec(
        "cls", 6, IntType(5, True), r.integers(-40, 40, size=(2, 6)), vectors=3, pe=3),
    "select_class_token": lambda r: select.Spec("cls", 6, IntType(7, False), 5, 2, pe=2),
    "layernorm": lambda r: layernorm.Spec(
        "ln", 8, IntType(6, True), IntType(7, True), 14, 6, r.integers(-90, 90, size=8),
        r.integers(-400, 400, size=8), 5, var_offset=3, vectors=2, pe=2),
    # graphs: a fork feeds both ports (Q and K projections; attention weights and V)
    "matmul_qk": lambda r: prepared(attention_scores(int(r.integers(100)), tokens=4)),
    "matmul_av_pingpong": lambda r: prepared(attention_values(int(r.integers(100)))),
    # running sums in a memory (6 / 2 = 3 channel groups) / in a register (one group)
    "vvau_xnor_thresholds": lambda r: _vvau(r, 6, 9, BIPOLAR, BIPOLAR, 2, BIPOLAR),
    "vvau_mac_raw": lambda r: _vvau(r, 5, 4, IntType(4, True), IntType(3, True), 5, None),
    "fork_join_dup_add": fork_join,  # a graph: dup and add need their neighbours
    # differential: wide deltas in two words, accumulators in a memory (bipolar and raw
    # outputs, accumulators in registers: Amaranth sim in test_nodes_dmvau.py)
    "differential_mac_thresholds": lambda r: _differential(
        r, 8, 6, IntType(3, False), IntType(2, True), IntType(2, False), vectors=4, pe=2,
        lanes=2, narrow_bits=2),
    # groups of three channels (a wide group escapes), bipolar weights, raw outputs
    "differential_simd_groups": lambda r: _differential(
        r, 12, 4, IntType(3, True), BIPOLAR, None, vectors=5, pe=2, lanes=6, narrow_bits=2,
        simd=3),
}


@pytest.mark.parametrize("case", sorted(NODE_CASES))
def test_node_kind_as_verilog(case, tmp_path):
    made = NODE_CASES[case](np.random.default_rng(11))
    run_graph(case_graph(made), tmp_path, stall=0.5)


def test_every_node_kind_has_a_verilog_test():
    covered = {type(n.spec) for c in NODE_CASES
               for n in case_graph(NODE_CASES[c](np.random.default_rng(0))).nodes}
    assert {nodes.spec_class(k) for k in nodes.kinds()} <= covered


@pytest.mark.parametrize("stall", [0.0, 0.9])
def test_stall_extremes_on_a_node(stall, tmp_path):
    spec = NODE_CASES["mvau_mac_int"](np.random.default_rng(5))
    res = run_node(spec, tmp_path, frames=12, stall=stall, seed=3)
    if stall == 0.0:
        # one (nf, sf) beat per cycle: 2 vectors x 2 x 4 beats
        assert res.cycles_per_frame == pytest.approx(spec.cycles(), abs=1)


def _build_and_sim(model, out, *build_args, sim_args=()):
    proc = run_cli("build", "-q", str(model), "-o", str(out), *build_args)
    assert proc.returncode == 0, proc.stderr
    proc = run_cli("sim", str(out), *sim_args)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads((out / "sim" / "results.json").read_text())


def test_digits_mlp_on_real_digits_through_the_cli(tmp_path):
    _, _, x_test, y_test = zoo.digits_data()
    np.save(tmp_path / "x.npy", x_test)
    res = _build_and_sim(DIGITS_MODEL, tmp_path / "out", "--target-fps", "1000000",
                         sim_args=("--inputs", str(tmp_path / "x.npy")))
    assert res["frames"] == len(x_test) and res["mismatches"] == 0
    logits = np.load(tmp_path / "out" / "sim" / "outputs.npy")
    golden = zoo_golden = __import__("fpgagen").golden(DIGITS_MODEL, x_test)
    assert np.array_equal(logits, zoo_golden)
    assert (golden.argmax(1) == y_test).mean() > 0.8
    est = res["estimated_cycles_per_frame"]
    assert abs(res["cycles_per_frame"] - est) <= 0.05 * est


@pytest.mark.parametrize("folding", [("--target-fps", "200000"), ("--target-fps", "2000")])
def test_tfc_1w1a_foldings(folding, tmp_path, zoo_dir):
    _, path = zoo_model("tfc_1w1a", "dynamo", zoo_dir)
    res = _build_and_sim(path, tmp_path / "out", *folding,
                         sim_args=("--count", "200" if folding[1] == "200000" else "12"))
    assert res["mismatches"] == 0
    est = res["estimated_cycles_per_frame"]
    assert abs(res["cycles_per_frame"] - est) <= 0.05 * est


def test_tfc_2w2a_partial_folding(tmp_path, zoo_dir):
    _, path = zoo_model("tfc_2w2a", "torchscript", zoo_dir)
    x = zoo.sample_inputs("tfc_2w2a", 100, seed=4)
    np.save(tmp_path / "x.npy", x)
    res = _build_and_sim(path, tmp_path / "out", "--target-fps", "100000",
                         sim_args=("--inputs", str(tmp_path / "x.npy")))
    assert res["mismatches"] == 0 and res["frames"] == 100


@pytest.mark.slow
@pytest.mark.parametrize("name", ["cnv_1w1a", "cnv_1w2a", "cnv_2w2a"])
def test_cnv_at_3000_fps_on_pynq_z2(name, tmp_path, zoo_dir):
    """BNN-PYNQ CNV (1 and 2 bit weights and activations) at FINN's CNV target: a few frames
    under random stalls, bit-exact, cycles/frame within 5% of the estimate and at most
    33,333 (+5%). 6 to 17 minutes each on 2 cores (Verilator build included)."""
    _, path = zoo_model(name, "dynamo", zoo_dir)
    res = _build_and_sim(path, tmp_path / "out", "--board", "pynq-z2", "--target-fps", "3000",
                         sim_args=("--count", "3"))
    assert res["frames"] == 3 and res["mismatches"] == 0
    est = res["estimated_cycles_per_frame"]
    assert abs(res["cycles_per_frame"] - est) <= 0.05 * est
    assert res["cycles_per_frame"] <= 1.05 * 100e6 / 3000


@pytest.mark.slow
@pytest.mark.parametrize("fps", ["fit", "100000", "1000"])
@pytest.mark.parametrize("name", [f"{n}_{p}" for n in ("tfc", "sfc", "lfc")
                                  for p in ("1w1a", "1w2a", "2w2a")])
def test_bnn_pynq_matrix_1000_frames(name, fps, tmp_path, zoo_dir):
    _, path = zoo_model(name, "dynamo", zoo_dir)
    args = () if fps == "fit" else ("--target-fps", fps)
    frames = "1000" if fps != "1000" else "20"
    res = _build_and_sim(path, tmp_path / "out", *args, sim_args=("--count", frames))
    assert res["mismatches"] == 0
