"""The cocotb stream harness (fpgagen.sim) against tiny hand-written designs.

The designs are Amaranth components with the fixed ``fpgagen_top`` ports. Every check
that the harness can pass is paired with one showing it can fail.
"""

from __future__ import annotations

import json
import random
import shutil
import warnings
from pathlib import Path

import pytest
from amaranth.back import verilog
from amaranth.hdl import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from fpgagen.errors import SimulationError
from fpgagen.sim import build_key, ensure_simulator, simulate_stream

WIDTH = 80          # wider than 64 bits: words travel as Python ints
FRAME = 8           # words per frame, in and out
ADDEND = 3
INTERVAL = 2        # the test design takes one input word every INTERVAL cycles


class AddConst(wiring.Component):
    """Adds a constant to each word; a 2-entry skid buffer; ``tlast`` every ``frame`` words.

    It accepts a word at most every ``interval`` cycles, so a frame takes exactly
    ``frame * interval`` cycles without stalls. ``s_axis_tready`` depends
    combinationally on ``s_axis_tvalid`` and ``m_axis_tready``, which the harness must
    sample after its own writes have settled. ``bug`` injects a fault that shows only
    when the buffer is full, i.e. under backpressure: ``"dup"`` sends a word twice,
    ``"drop"`` loses one. ``bug="mute"`` never sends anything.
    """

    def __init__(self, *, width=WIDTH, frame=FRAME, addend=ADDEND, interval=INTERVAL,
                 bug=None):
        self.width, self.frame, self.addend, self.interval, self.bug = (
            width, frame, addend, interval, bug)
        super().__init__({
            "s_axis_tdata": In(width), "s_axis_tvalid": In(1), "s_axis_tready": Out(1),
            "m_axis_tdata": Out(width), "m_axis_tvalid": Out(1), "m_axis_tready": In(1),
            "m_axis_tlast": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        head, tail = Signal(self.width), Signal(self.width)
        count = Signal(range(3))
        wait = Signal(range(self.interval + 1))
        out_pos = Signal(range(self.frame))
        word = (self.s_axis_tdata + self.addend)[:self.width]

        m.d.comb += [
            self.s_axis_tready.eq(self.s_axis_tvalid & (wait == 0)
                                  & ((count < 2) | self.m_axis_tready)),
            self.m_axis_tvalid.eq(count != 0),
            self.m_axis_tdata.eq(head),
            self.m_axis_tlast.eq(out_pos == self.frame - 1),
        ]
        if self.bug == "mute":
            m.d.comb += self.m_axis_tvalid.eq(0)
        push = self.s_axis_tvalid & self.s_axis_tready
        pop = self.m_axis_tvalid & self.m_axis_tready

        with m.If(push):
            m.d.sync += wait.eq(self.interval - 1)
        with m.Elif(wait != 0):
            m.d.sync += wait.eq(wait - 1)
        with m.If(pop):
            with m.If(out_pos == self.frame - 1):
                m.d.sync += out_pos.eq(0)
            with m.Else():
                m.d.sync += out_pos.eq(out_pos + 1)

        with m.If(push & ~pop):
            with m.If(count == 0):
                m.d.sync += head.eq(word)
            with m.Else():
                m.d.sync += tail.eq(word)
            m.d.sync += count.eq(count + 1)
        with m.Elif(pop & ~push):
            m.d.sync += head.eq(tail)
            if self.bug == "dup":  # when full, the tail word stays too: it goes out twice
                with m.If(count != 2):
                    m.d.sync += count.eq(count - 1)
            else:
                m.d.sync += count.eq(count - 1)
        with m.Elif(pop & push):
            with m.If(count == 1):
                m.d.sync += head.eq(word)
            with m.Else():
                m.d.sync += head.eq(tail)
                if self.bug == "drop":  # the new word is taken but not kept
                    m.d.sync += count.eq(1)
                else:
                    m.d.sync += tail.eq(word)
        return m


def emit(path: Path, **params) -> Path:
    path.write_text(verilog.convert(AddConst(**params), name="fpgagen_top"))
    return path


def vectors(frames: int, frame: int = FRAME, seed: int = 1):
    """Random input frames (wide words) and what AddConst makes of them."""
    rng = random.Random(seed)
    ins = [[rng.getrandbits(WIDTH - 1) for _ in range(frame)] for _ in range(frames)]
    return ins, [[w + ADDEND for w in f] for f in ins]


@pytest.fixture(scope="module")
def sim_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("simcache")


@pytest.fixture(scope="module")
def designs(tmp_path_factory) -> dict[str, Path]:
    rtl = tmp_path_factory.mktemp("rtl")
    return {bug or "good": emit(rtl / f"{bug or 'good'}.v", bug=bug)
            for bug in (None, "dup", "drop", "mute")}


def run(design: Path, tmp_path: Path, sim_cache: Path, ins, exp, **kwargs):
    return simulate_stream([design], tmp_path / "sim", ins, exp, cache_dir=sim_cache,
                           **kwargs)


# -- a correct design passes, with exact timing ---------------------------------------------

@pytest.mark.parametrize("stall", [0.0, 0.5, 0.9])
def test_correct_design_passes_under_stalls(designs, tmp_path, sim_cache, stall):
    ins, exp = vectors(30)
    res = run(designs["good"], tmp_path, sim_cache, ins, exp, stall_in=stall,
              stall_out=stall, seed=7)
    assert (res.mismatches, res.tlast_errors, res.first_mismatch) == (0, 0, None)
    assert res.ok
    assert res.out_words == exp
    assert res.frames == 30 and res.simulator == "verilator"


def test_timing_is_cycle_exact(designs, tmp_path, sim_cache):
    # One word per INTERVAL cycles: a frame every FRAME * INTERVAL cycles, and the last
    # word of frame 0 leaves one cycle after it entered, (FRAME - 1) * INTERVAL cycles
    # after the first. Off-by-one sampling would show here.
    ins, exp = vectors(6)
    res = run(designs["good"], tmp_path, sim_cache, ins, exp)
    assert res.cycles_per_frame == FRAME * INTERVAL
    assert res.latency_cycles == (FRAME - 1) * INTERVAL + 1
    one = run(designs["good"], tmp_path, sim_cache, ins[:1], exp[:1])
    assert one.cycles_per_frame == one.latency_cycles == (FRAME - 1) * INTERVAL + 1


# -- the harness can fail -----------------------------------------------------------------

def test_wrong_expected_word_is_reported(designs, tmp_path, sim_cache):
    ins, exp = vectors(10)
    exp[6][5] ^= 1 << 70
    res = run(designs["good"], tmp_path, sim_cache, ins, exp)
    assert not res.ok
    assert res.mismatches == 1  # frame 6 is past the 4 frames of the stall-free phase
    assert res.first_mismatch == {"phase": 2, "frame": 6, "word": 5,
                                  "expected": exp[6][5], "got": exp[6][5] ^ 1 << 70}
    assert res.out_words[6][5] == ins[6][5] + ADDEND


def test_wrong_tlast_is_counted(designs, tmp_path, sim_cache):
    # Frames of 4 words: the design raises tlast every 8, so every other frame's last
    # word lacks it, in both phases (4 + 10 frames).
    ins, exp = vectors(10, frame=4)
    res = run(designs["good"], tmp_path, sim_cache, ins, exp)
    assert res.mismatches == 0
    assert res.tlast_errors == 2 + 5


def test_extra_output_word_is_caught(designs, tmp_path, sim_cache):
    # Expect one word less in the last frame than the design sends.
    ins, exp = vectors(10)
    last = exp[-1].pop()
    res = run(designs["good"], tmp_path, sim_cache, ins, exp)
    assert res.mismatches == 1
    assert res.first_mismatch == {"phase": 2, "frame": 10, "word": 0, "expected": None,
                                  "got": last}
    assert res.tlast_errors == 1  # the new last word of frame 9 lacks tlast


def test_runaway_output_stops_the_run(designs, tmp_path, sim_cache):
    # Expecting one word per frame, and getting eight.
    ins, exp = vectors(10)
    with pytest.raises(SimulationError, match=r"runaway output: \d+ words where 10 were "
                                              r"expected; phase 2"):
        run(designs["good"], tmp_path, sim_cache, ins, [f[:1] for f in exp])


def test_duplicating_design_is_caught(designs, tmp_path, sim_cache):
    ins, exp = vectors(30)
    calm = run(designs["dup"], tmp_path, sim_cache, ins, exp, stall_in=0, stall_out=0)
    assert calm.ok  # the bug needs backpressure to show
    res = run(designs["dup"], tmp_path, sim_cache, ins, exp, stall_in=0.2, stall_out=0.5)
    assert res.mismatches > 0
    assert res.first_mismatch["phase"] == 2


def test_dropping_design_is_caught(designs, tmp_path, sim_cache):
    ins, exp = vectors(30)
    assert run(designs["drop"], tmp_path, sim_cache, ins, exp, stall_in=0, stall_out=0).ok
    with pytest.raises(SimulationError, match=r"simulation stalled: no output for 300 "
                                              r"cycles after frame \d+ .*phase 2"):
        run(designs["drop"], tmp_path, sim_cache, ins, exp, stall_in=0.2, stall_out=0.5,
            timeout_cycles=300)


def test_silent_design_times_out(designs, tmp_path, sim_cache):
    ins, exp = vectors(2)
    with pytest.raises(SimulationError, match=r"no output for 500 cycles after reset"):
        run(designs["mute"], tmp_path, sim_cache, ins, exp, timeout_cycles=500)


def test_word_too_wide_for_the_port(designs, tmp_path, sim_cache):
    ins, exp = vectors(2)
    ins[1][0] = 1 << WIDTH
    with pytest.raises(SimulationError, match=r"input word 0x1[0-9a-f]* does not fit "
                                              r"s_axis_tdata \(80 bits\)"):
        run(designs["good"], tmp_path, sim_cache, ins, exp)


# -- builds, progress, other simulators ---------------------------------------------------------

def test_second_call_reuses_the_build(designs, tmp_path, sim_cache):
    ins, exp = vectors(4)
    runs = [run(designs["good"], tmp_path, sim_cache, ins, exp) for _ in range(2)]
    assert all(res.ok for res in runs)
    key = build_key([designs["good"]], "verilator")
    stamp = json.loads((sim_cache / f"verilator-{key}" / "fpgagen_build.json").read_text())
    assert stamp["seconds"] > 1.0 > runs[1].build_seconds


def test_progress_goes_to_stderr(designs, tmp_path, sim_cache, capfd):
    ins, exp = vectors(40)
    assert run(designs["good"], tmp_path, sim_cache, ins, exp, progress=True).ok
    err = capfd.readouterr().err
    assert "sim: 2/40 frames" in err and "sim: 40/40 frames" in err


@pytest.mark.parametrize("simulator", [
    "verilator",
    pytest.param("icarus", marks=pytest.mark.skipif(shutil.which("iverilog") is None,
                                                    reason="iverilog is not installed")),
])
def test_waves_are_written(tmp_path, sim_cache, simulator):
    design = emit(tmp_path / "traced.v", frame=4)
    ins, exp = vectors(2, frame=4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # VCD instead of FST without liblz4-dev
        res = run(design, tmp_path, sim_cache, ins, exp, simulator=simulator, waves=True)
    assert res.ok
    assert res.waves_file.suffix in (".fst", ".vcd")
    assert res.waves_file.parent == tmp_path / "sim"
    assert res.waves_file.stat().st_size > 0


@pytest.mark.skipif(shutil.which("iverilog") is None, reason="iverilog is not installed")
def test_icarus_sees_what_verilator_sees(designs, tmp_path, sim_cache):
    ins, exp = vectors(12)
    runs = [run(designs["good"], tmp_path / sim, sim_cache, ins, exp, simulator=sim,
                stall_in=0.5, stall_out=0.5, seed=3) for sim in ("verilator", "icarus")]
    for res in runs:
        assert res.ok and res.out_words == exp
    assert runs[0].cycles_total == runs[1].cycles_total
    assert runs[1].cycles_per_frame == FRAME * INTERVAL


def test_missing_simulator_is_a_one_line_error(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(SimulationError, match=r"'icarus' is not available: iverilog, vvp "
                                              r"not found on PATH \(apt-get install"):
        ensure_simulator("icarus")
    with pytest.raises(SimulationError, match=r"unknown simulator 'modelsim'"):
        ensure_simulator("modelsim")
