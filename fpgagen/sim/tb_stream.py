"""cocotb bench for ``fpgagen_top``, launched by :func:`fpgagen.sim.runner.simulate_stream`.

It runs inside the simulator process, imported as the top-level module ``tb_stream``
(its directory goes on the simulator's PYTHONPATH), so that each run does not pay for
importing the ``fpgagen`` package, or numpy: it uses only cocotb and the standard library.
Vectors and settings arrive in the JSON file named by the ``FPGAGEN_SIM_CONFIG``
environment variable; the bench writes what it saw to the result file named there.
Failures of the design (stalls, wrong words) go into the result, not into a failing
cocotb test, so that the launcher can explain them.

Sampling scheme, once per clock cycle (the design is clocked on rising edges only):

1. At the falling edge, write the inputs for the next rising edge (``s_axis_tvalid``,
   ``s_axis_tdata``, ``m_axis_tready``), only those that change.
2. If anything was written, ``await ReadOnly()``: every combinational path has settled
   with the new inputs. If nothing was written, the values at the falling edge are
   already settled: the last evaluation was at the rising edge, with the same inputs.
3. Read ``s_axis_tready``, ``m_axis_tvalid``, ``m_axis_tdata``, ``m_axis_tlast``. Nothing
   changes between now and the next rising edge except the clock, so these are exactly
   what that edge samples: a word moves on it iff valid and ready both read high.

One coroutine drives and monitors both ends, so a cycle costs one or two triggers and a
few handle accesses. The hot reads (and, with Verilator, the writes) go through the raw
GPI handles: the public ``.value`` builds a ``Logic``/``LogicArray`` per access, which
costs more than the rest of the cycle. Simulators whose inertial writes cocotb does not
trust (Icarus) get the public setters, which cocotb schedules safely.
"""

from __future__ import annotations

import json
import os
import random
import time
from functools import partial

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, ReadOnly

# The environment variable naming the JSON config file written by the runner.
CONFIG_ENV = "FPGAGEN_SIM_CONFIG"
RESET_CYCLES = 4
# Cycles with m_axis_tready high and no input after the last word of a phase has gone
# in and the last expected word has come out: a design that sends more words than it
# should is caught there.
DRAIN_CYCLES = 32
# Besides independent per-cycle stalls, each side now and then stalls for a long burst,
# so FIFOs inside the design fill up (output side) and run dry (input side).
BURST_RATE = 1 / 400
BURST_MIN, BURST_MAX = 20, 100
_DEPOSIT = 0  # GPI set action of a plain (inertial) write


class StallPattern:
    """Seeded per-cycle stall decisions (true = stall), made ``CHUNK`` cycles at a time."""

    CHUNK = 1 << 14

    def __init__(self, probability: float, seed: int):
        self.probability = probability
        self.rng = random.Random(seed)

    def chunk(self) -> list[bool]:
        n, p, rng = self.CHUNK, self.probability, self.rng
        if p <= 0:
            return [False] * n
        rand = rng.random
        stall = [rand() < p for _ in range(n)]
        start = int(rng.expovariate(BURST_RATE))
        while start < n:
            end = min(n, start + rng.randint(BURST_MIN, BURST_MAX))
            stall[start:end] = [True] * (end - start)
            start = end + int(rng.expovariate(BURST_RATE))
        return stall


class _BenchError(Exception):
    """The design or the vectors failed in a way the launcher reports as an error."""


class _Stalled(_BenchError):
    """No output word for the configured number of cycles."""


def _setter(handle):
    """A fast ``write(int)`` for ``handle`` (see the module docstring)."""
    if os.environ.get("COCOTB_TRUST_INERTIAL_WRITES") != "1":
        return handle.set
    raw = handle._handle
    width = len(handle)
    if width <= 32:
        return partial(raw.set_signal_val_int, _DEPOSIT)
    write_bits = raw.set_signal_val_binstr
    spec = f"0{width}b"
    return lambda value: write_bits(_DEPOSIT, format(value, spec))


class _Bench:
    def __init__(self, dut, cfg: dict):
        self.clk = dut.clk
        self.rst = dut.rst
        self.set_data = _setter(dut.s_axis_tdata)
        self.set_valid = _setter(dut.s_axis_tvalid)
        self.set_ready = _setter(dut.m_axis_tready)
        self.s_ready = dut.s_axis_tready._handle
        self.m_valid = dut.m_axis_tvalid._handle
        self.m_data = dut.m_axis_tdata._handle
        self.m_last = dut.m_axis_tlast._handle
        self.in_width = len(dut.s_axis_tdata)
        self.out_width = len(dut.m_axis_tdata)
        self.fall = FallingEdge(dut.clk)
        self.read_only = ReadOnly()

        self.timeout = int(cfg["timeout_cycles"])
        self.cycle = 0          # the next rising edge; cycle 0 is the first after reset
        self.valid_now = 0      # what the bench drives on s_axis_tvalid / m_axis_tready
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

    def _read_word(self):
        bits = self.m_data.get_signal_val_binstr()
        try:
            return int(bits, 2)
        except ValueError:  # X or Z bits (4-state simulators): keep the text
            return "0b" + bits

    def check_width(self, name: str, words: list[int], width: int, port: str) -> None:
        if words and (min(words) < 0 or max(words).bit_length() > width):
            bad = next(w for w in words if w < 0 or w.bit_length() > width)
            raise _BenchError(f"{name} word {bad:#x} does not fit {port} ({width} bits)")

    # -- driving ----------------------------------------------------------------------

    async def reset(self, start_clock: bool = True) -> None:
        """Hold ``rst`` high for ``RESET_CYCLES`` cycles; both stream ends idle meanwhile.

        Called again in the middle of a run (``start_clock=False``) it is the mid-frame
        reset of the stress phases: whatever the design holds is to be discarded.
        """
        if not start_clock:  # leave the ReadOnly phase the last cycle ended in
            await self.fall
            self.cycle += 1
        self.set_valid(0)
        self.set_ready(0)
        self.set_data(0)
        self.valid_now = self.ready_now = 0
        self.rst.value = 1
        if start_clock:
            Clock(self.clk, 10, unit="ns").start(start_high=False)
        for _ in range(RESET_CYCLES):
            await self.fall
        if not start_clock:
            self.cycle += RESET_CYCLES
        self.rst.value = 0

    async def run_phase(self, phase: int, in_words: list[int], exp_words: list[int],
                        exp_lens: list[int], stall_in: StallPattern,
                        stall_out: StallPattern, progress=None,
                        cut: int | None = None, hold: int = 0) -> dict:
        """Stream ``in_words`` in, check every output word against ``exp_words``.

        Once every word has gone in and come out, the phase idles ``DRAIN_CYCLES``
        cycles with ready high; a word arriving then is an extra one, and a mismatch.
        Returns the output words per frame, the cycle of the first input transfer and
        the cycle of each frame's last output word.

        With ``cut``, the phase stops ``hold`` cycles after the first ``cut`` input
        words have gone in (the caller then resets the design): the words that came
        out until then are checked as a prefix of ``exp_words``.
        """
        fall, read_only = self.fall, self.read_only
        set_data, set_valid, set_ready = self.set_data, self.set_valid, self.set_ready
        s_ready, m_valid, m_last = self.s_ready, self.m_valid, self.m_last
        read_word = self._read_word
        timeout = self.timeout

        n_in, n_out = len(in_words), len(exp_words)
        if cut is not None:
            n_in = min(cut, n_in)
        i_in = i_out = 0
        pending = False         # s_axis_tvalid is high with in_words[i_in]
        frame = pos = 0         # where the next output word belongs
        frame_len = exp_lens[0]
        words: list[int] = []
        out_frames: list[list[int]] = []
        first_in_cycle = None
        frame_end_cycles: list[int] = []
        idle = 0                # cycles with ready high and no output word
        drain = DRAIN_CYCLES
        in_stall = out_stall = ()
        k = chunk_len = 0
        cycle = self.cycle
        valid_now, ready_now = self.valid_now, self.ready_now

        while drain:
            await fall
            if k == chunk_len:
                in_stall, out_stall, k = stall_in.chunk(), stall_out.chunk(), 0
                chunk_len = len(in_stall)
            wrote = False
            # AXI rule: once valid is up, it stays up with the same word until taken.
            if not pending:
                if i_in < n_in and not in_stall[k]:
                    set_data(in_words[i_in])
                    pending = wrote = True
                    if not valid_now:
                        set_valid(1)
                        valid_now = 1
                elif valid_now:
                    set_valid(0)
                    valid_now = 0
                    wrote = True
            ready = 0 if out_stall[k] and i_out < n_out else 1
            k += 1
            if ready != ready_now:
                set_ready(ready)
                ready_now = ready
                wrote = True
            if wrote:
                await read_only

            if pending and s_ready.get_signal_val_long():
                if first_in_cycle is None:
                    first_in_cycle = cycle
                i_in += 1
                pending = False
                if i_out >= n_out:
                    idle = 0
            if ready and m_valid.get_signal_val_long():
                got = read_word()
                if i_out < n_out:
                    idle = 0
                    if got != exp_words[i_out]:
                        self._mismatch(phase, frame, pos, exp_words[i_out], got)
                    is_last = pos == frame_len - 1
                    if bool(m_last.get_signal_val_long()) != is_last:
                        self.tlast_errors += 1
                    words.append(got)
                    if is_last:
                        out_frames.append(words)
                        words = []
                        frame_end_cycles.append(cycle)
                        frame += 1
                        pos = 0
                        if frame < len(exp_lens):
                            frame_len = exp_lens[frame]
                        if progress is not None:
                            progress(frame, cycle)
                    else:
                        pos += 1
                else:  # one word too many
                    self._mismatch(phase, len(exp_lens), i_out - n_out, None, got)
                    if i_out - n_out >= max(DRAIN_CYCLES, n_out):
                        raise _BenchError(
                            f"runaway output: {i_out + 1} words where {n_out} were expected; "
                            f"phase {phase}, sent {i_in} of {n_in} input words")
                i_out += 1
            elif ready and i_out < n_out:
                idle += 1
                if idle >= timeout:
                    self._stalled(phase, idle, frame, pos, i_in, n_in, i_out, n_out)
            if cut is not None and i_in == n_in:
                if hold <= 0:
                    self.cycle = cycle  # reset() waits out this cycle
                    break
                hold -= 1
            if i_out >= n_out:
                if i_in == n_in:
                    drain -= 1
                elif pending:  # every word is out, but not every word has gone in
                    idle += 1
                    if idle >= timeout:
                        self._stalled(phase, idle, frame, pos, i_in, n_in, i_out, n_out)
            cycle += 1
            self.cycle = cycle

        self.valid_now, self.ready_now = valid_now, ready_now
        return {"out_frames": out_frames, "first_in_cycle": first_in_cycle,
                "frame_end_cycles": frame_end_cycles, "words_out": i_out}

    def _stalled(self, phase, idle, frame, pos, i_in, n_in, i_out, n_out):
        if i_out >= n_out:
            what = f"input word {i_in} never taken after all {n_out} output words"
        else:
            where = (f"frame {frame} word {pos - 1}" if pos else
                     f"frame {frame - 1} (its last word)" if frame else
                     "reset (no output word yet)")
            what = f"no output for {idle} cycles after {where}"
        raise _Stalled(
            f"simulation stalled: {what}; phase {phase}, sent {i_in} of {n_in} input words, "
            f"received {i_out} of {n_out} output words, {self.mismatches} mismatches")


async def _run(bench: _Bench, cfg: dict, result: dict) -> None:
    in_words = [int(w, 16) for w in cfg["in_words"]]
    exp_words = [int(w, 16) for w in cfg["expected"]]
    in_lens, exp_lens = cfg["in_lens"], cfg["out_lens"]
    bench.check_width("input", in_words, bench.in_width, "s_axis_tdata")
    bench.check_width("expected", exp_words, bench.out_width, "m_axis_tdata")
    frames = len(in_lens)

    await bench.reset()
    t0 = time.perf_counter()

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
    progress = progress_file = None
    if cfg.get("progress_file"):
        progress_file = open(cfg["progress_file"], "w", buffering=1)
        step = max(1, frames // 20)

        def progress(done: int, cycle: int) -> None:
            if done % step == 0 or done == frames:
                rate = cycle / max(time.perf_counter() - t0, 1e-9)
                progress_file.write(f"sim: {done}/{frames} frames, {rate:,.0f} cycles/s\n")
    try:
        full = await bench.run_phase(2, in_words, exp_words, exp_lens, stall_in, stall_out,
                                     progress)
    finally:
        if progress_file is not None:
            progress_file.close()
    result["out_words"] = [[hex(w) if isinstance(w, int) else w for w in f]
                           for f in full["out_frames"]]
    result["stress"] = await _stress(bench, cfg, in_words, exp_words, exp_lens)
    result["cycles_per_s"] = bench.cycle / max(time.perf_counter() - t0, 1e-9)


async def _stress(bench: _Bench, cfg: dict, in_words, exp_words, exp_lens) -> list[dict]:
    """The optional stress schedule, run after phase 2, phases numbered from 3.

    Each entry runs every frame with its own stall probabilities, or, with
    ``reset_after`` (a number of input words, typically in the middle of a frame),
    stops ``hold`` cycles after that many words went in and resets the design. The
    entry after a reset starts again at frame 0 and must come out exactly right.
    """
    summary = []
    for k, entry in enumerate(cfg.get("stress") or []):
        phase = 3 + k
        seed = int(entry.get("seed", k))
        before = bench.mismatches
        start = bench.cycle
        cut = entry.get("reset_after")
        res = await bench.run_phase(
            phase, in_words, exp_words, exp_lens,
            StallPattern(float(entry["stall_in"]), seed=2 * seed + 7),
            StallPattern(float(entry["stall_out"]), seed=2 * seed + 8),
            cut=cut, hold=int(entry.get("hold", 0)))
        if cut is not None:
            await bench.reset(start_clock=False)
        summary.append({"phase": phase, "stall_in": entry["stall_in"],
                        "stall_out": entry["stall_out"], "reset_after": cut,
                        "words_out": res["words_out"], "cycles": bench.cycle - start,
                        "mismatches": bench.mismatches - before})
    return summary


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
    except Exception as err:
        result["error"] = f"the bench failed: {err!r}"
        raise
    finally:
        result.update(mismatches=bench.mismatches, first_mismatch=bench.first_mismatch,
                      tlast_errors=bench.tlast_errors, cycles_total=bench.cycle)
        with open(cfg["result_file"], "w") as fh:
            json.dump(result, fh)
