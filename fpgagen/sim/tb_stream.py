"""cocotb bench for ``fpgagen_top``, launched by :func:`fpgagen.sim.runner.simulate_stream`.

It runs inside the simulator process. The vectors and settings arrive in the JSON file
named by the ``FPGAGEN_SIM_CONFIG`` environment variable; the bench writes its findings
to the result file named there. Problems with the design (stalls, wrong words) are
reported in the result, not as a failing cocotb test, so the launcher can explain them.

Sampling scheme, once per clock cycle:

1. At the falling edge, write the inputs for the next rising edge
   (``s_axis_tvalid``/``s_axis_tdata`` and ``m_axis_tready``).
2. ``await ReadOnly()``: every combinational path has settled with those inputs, so
   ``s_axis_tready``, ``m_axis_tvalid``, ``m_axis_tdata`` and ``m_axis_tlast`` read now
   are exactly what the next rising edge samples (nothing changes between here and that
   edge but the clock). A word moves on that edge iff valid and ready both read high.

One coroutine does the driving and the monitoring, so a cycle costs two triggers and a
handful of handle accesses. Values are read through the raw GPI handles: the public
``.value`` builds a ``Logic``/``LogicArray`` object per read, which costs more than the
whole rest of the cycle.
"""

from __future__ import annotations

import json
import os
import time

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, ReadOnly

from fpgagen.sim.runner import CONFIG_ENV

RESET_CYCLES = 4
# Cycles with m_axis_tready high, and no new input, after the last expected word of a
# phase: a design that emits words it should not is caught there.
DRAIN_CYCLES = 32
# Besides independent per-cycle stalls, a side now and then stalls for a long burst, so
# FIFOs inside the design fill up (output side) and run dry (input side).
BURST_RATE = 1 / 400
BURST_MIN, BURST_MAX = 20, 100


class StallPattern:
    """Seeded per-cycle stall decisions (1 = stall), made ``CHUNK`` cycles at a time."""

    CHUNK = 1 << 14

    def __init__(self, probability: float, seed: int):
        self.probability = probability
        self.rng = np.random.default_rng(seed)

    def chunk(self) -> list[int]:
        n = self.CHUNK
        if self.probability <= 0:
            return [0] * n
        stall = self.rng.random(n) < self.probability
        starts = np.flatnonzero(self.rng.random(n) < BURST_RATE)
        ends = np.minimum(starts + self.rng.integers(BURST_MIN, BURST_MAX + 1, starts.size), n)
        depth = np.zeros(n + 1, dtype=np.int64)
        np.add.at(depth, starts, 1)
        np.add.at(depth, ends, -1)
        stall |= np.cumsum(depth[:n]) > 0
        return stall.astype(np.uint8).tolist()


class _BenchError(Exception):
    """The design or the vectors failed in a way the launcher reports as an error."""


class _Stalled(_BenchError):
    """No output word for the configured number of cycles."""


class _Bench:
    def __init__(self, dut, cfg: dict):
        self.cfg = cfg
        self.clk = dut.clk
        self.rst = dut.rst
        self.s_data = dut.s_axis_tdata
        self.s_valid = dut.s_axis_tvalid
        self.m_ready = dut.m_axis_tready
        # Raw GPI handles for the hot reads (see the module docstring).
        self.s_ready_raw = dut.s_axis_tready._handle
        self.m_valid_raw = dut.m_axis_tvalid._handle
        self.m_data_raw = dut.m_axis_tdata._handle
        self.m_last_raw = dut.m_axis_tlast._handle
        self.in_width = len(dut.s_axis_tdata)
        self.out_width = len(dut.m_axis_tdata)
        self.fall = FallingEdge(dut.clk)
        self.read_only = ReadOnly()

        self.timeout = int(cfg["timeout_cycles"])
        self.cycle = 0
        self.valid_now = 0
        self.ready_now = 0
        self.mismatches = 0
        self.first_mismatch: dict | None = None
        self.tlast_errors = 0

    # -- checking ---------------------------------------------------------------------

    def _mismatch(self, phase: int, frame: int, word: int, expected, got) -> None:
        self.mismatches += 1
        if self.first_mismatch is None:
            self.first_mismatch = {
                "phase": phase, "frame": frame, "word": word,
                "expected": None if expected is None else hex(expected),
                "got": got if isinstance(got, str) else hex(got),
            }

    def _read_out_word(self):
        bits = self.m_data_raw.get_signal_val_binstr()
        try:
            return int(bits, 2)
        except ValueError:  # X or Z bits (4-state simulators): keep the text
            return "0b" + bits

    # -- one phase ----------------------------------------------------------------------

    async def run_phase(self, phase: int, in_words: list[int], exp_words: list[int],
                        exp_lens: list[int], stall_in: StallPattern,
                        stall_out: StallPattern, progress=None) -> dict:
        """Stream ``in_words`` in and check the output against ``exp_words``.

        Returns per-frame output words, the cycle of the first input transfer and the
        cycle of each frame's last output word.
        """
        fall, read_only = self.fall, self.read_only
        s_data, s_valid, m_ready = self.s_data, self.s_valid, self.m_ready
        s_ready_raw, m_valid_raw, m_last_raw = self.s_ready_raw, self.m_valid_raw, self.m_last_raw
        read_word = self._read_out_word
        timeout = self.timeout

        n_in, n_out = len(in_words), len(exp_words)
        i_in = i_out = 0
        pending = False                 # s_axis_tvalid is high, holding in_words[i_in]
        frame = pos = 0                 # position of the next output word
        frame_len = exp_lens[0]
        frame_words: list[int] = []
        out_frames: list[list[int]] = []
        first_in_cycle = None
        frame_end_cycles: list[int] = []
        idle = 0                        # cycles with ready high and no output word
        in_stall, in_k = stall_in.chunk(), 0
        out_stall, out_k = stall_out.chunk(), 0
        chunk_len = len(in_stall)
        cycle = self.cycle
        valid_now, ready_now = self.valid_now, self.ready_now

        while i_out < n_out:
            await fall
            if in_k == chunk_len:
                in_stall, in_k = stall_in.chunk(), 0
                out_stall, out_k = stall_out.chunk(), 0
            # AXI rule: once valid is up, it stays up with the same word until taken.
            if not pending:
                if i_in < n_in and not in_stall[in_k]:
                    s_data.value = in_words[i_in]
                    pending = True
                    if not valid_now:
                        s_valid.value = valid_now = 1
                elif valid_now:
                    s_valid.value = valid_now = 0
            in_k += 1
            ready = 0 if out_stall[out_k] else 1
            out_k += 1
            if ready != ready_now:
                m_ready.value = ready_now = ready

            await read_only

            if pending and s_ready_raw.get_signal_val_long():
                if first_in_cycle is None:
                    first_in_cycle = cycle
                i_in += 1
                pending = False
            if ready:
                if m_valid_raw.get_signal_val_long():
                    got = read_word()
                    expected = exp_words[i_out]
                    if got != expected:
                        self._mismatch(phase, frame, pos, expected, got)
                    is_last = pos == frame_len - 1
                    if bool(m_last_raw.get_signal_val_long()) != is_last:
                        self.tlast_errors += 1
                    frame_words.append(got)
                    i_out += 1
                    idle = 0
                    if is_last:
                        out_frames.append(frame_words)
                        frame_words = []
                        frame_end_cycles.append(cycle)
                        frame += 1
                        pos = 0
                        if frame < len(exp_lens):
                            frame_len = exp_lens[frame]
                        if progress is not None:
                            progress(frame, cycle)
                    else:
                        pos += 1
                else:
                    idle += 1
                    if idle >= timeout:
                        self.cycle = cycle + 1
                        raise _Stalled(
                            f"simulation stalled: no output for {idle} cycles after "
                            + (f"frame {frame} word {pos - 1}" if pos else
                               f"frame {frame - 1} (complete)" if frame else
                               "reset, before the first output word")
                            + f" (phase {phase}; sent {i_in} of {n_in} input words, "
                            f"received {i_out} of {n_out} output words, "
                            f"{self.mismatches} mismatches so far)")
            cycle += 1

        self.cycle, self.valid_now, self.ready_now = cycle, valid_now, ready_now
        await self._drain(phase, len(exp_lens))
        return {"out_frames": out_frames, "first_in_cycle": first_in_cycle,
                "frame_end_cycles": frame_end_cycles}

    async def _drain(self, phase: int, frames: int) -> None:
        """Idle with ready high for a while; any word that comes out is one too many."""
        if self.valid_now:
            self.s_valid.value = self.valid_now = 0
        if not self.ready_now:
            self.m_ready.value = self.ready_now = 1
        extra = 0
        for _ in range(DRAIN_CYCLES):
            await self.fall
            await self.read_only
            if self.m_valid_raw.get_signal_val_long():
                self._mismatch(phase, frames, extra, None, self._read_out_word())
                extra += 1
            self.cycle += 1

    # -- whole run --------------------------------------------------------------------

    async def reset(self) -> None:
        self.s_valid.value = 0
        self.m_ready.value = 0
        self.s_data.value = 0
        self.rst.value = 1
        Clock(self.clk, 10, unit="ns").start(start_high=False)
        for _ in range(RESET_CYCLES):
            await self.fall
        self.rst.value = 0

    def check_widths(self, name: str, words: list[int], width: int, port: str) -> None:
        if words and (min(words) < 0 or max(words).bit_length() > width):
            bad = next(w for w in words if w < 0 or w.bit_length() > width)
            raise _BenchError(f"{name} word {bad:#x} does not fit {port} ({width} bits)")


async def _run(bench: _Bench, cfg: dict, result: dict) -> None:
    in_words = [int(w, 16) for w in cfg["in_words"]]
    exp_words = [int(w, 16) for w in cfg["expected"]]
    in_lens, exp_lens = cfg["in_lens"], cfg["out_lens"]
    bench.check_widths("input", in_words, bench.in_width, "s_axis_tdata")
    bench.check_widths("expected", exp_words, bench.out_width, "m_axis_tdata")
    frames = len(in_lens)

    await bench.reset()
    t0 = time.perf_counter()
    cycle0 = bench.cycle

    # Phase 1: no stalls, the first few frames back to back: latency and throughput.
    n_meas = min(frames, int(cfg["measure_frames"]))
    never = StallPattern(0.0, seed=0)
    meas = await bench.run_phase(1, in_words[:sum(in_lens[:n_meas])],
                                 exp_words[:sum(exp_lens[:n_meas])], exp_lens[:n_meas],
                                 never, never)
    ends = meas["frame_end_cycles"]
    result["latency_cycles"] = ends[0] - meas["first_in_cycle"]
    result["cycles_per_frame"] = ((ends[-1] - ends[0]) / (len(ends) - 1) if len(ends) > 1
                                  else float(result["latency_cycles"]))

    # Phase 2: every frame, random stalls on both sides.
    seed = int(cfg["seed"])
    stall_in = StallPattern(float(cfg["stall_in"]), seed=2 * seed)
    stall_out = StallPattern(float(cfg["stall_out"]), seed=2 * seed + 1)
    progress = progress_fh = None
    if cfg.get("progress_file"):
        progress_fh = open(cfg["progress_file"], "w", buffering=1)
        step = max(1, frames // 20)

        def progress(done: int, cycle: int) -> None:
            if done % step == 0 or done == frames:
                rate = (cycle - cycle0) / max(time.perf_counter() - t0, 1e-9)
                progress_fh.write(f"sim: {done}/{frames} frames, {rate:,.0f} cycles/s\n")
    try:
        full = await bench.run_phase(2, in_words, exp_words, exp_lens, stall_in, stall_out,
                                     progress)
    finally:
        if progress_fh is not None:
            progress_fh.close()
    result["out_words"] = [[hex(w) if isinstance(w, int) else w for w in f]
                           for f in full["out_frames"]]
    result["cycles_per_s"] = (bench.cycle - cycle0) / max(time.perf_counter() - t0, 1e-9)


@cocotb.test()
async def stream(dut):
    with open(os.environ[CONFIG_ENV]) as fh:
        cfg = json.load(fh)
    result: dict = {"error": None}
    bench = _Bench(dut, cfg)
    try:
        await _run(bench, cfg, result)
    except _BenchError as err:
        result["error"] = str(err)
    finally:
        result.update(mismatches=bench.mismatches, first_mismatch=bench.first_mismatch,
                      tlast_errors=bench.tlast_errors, cycles_total=bench.cycle)
        with open(cfg["result_file"], "w") as fh:
            json.dump(result, fh)
