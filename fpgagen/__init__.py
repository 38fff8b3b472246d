"""fpgagen: bit-exact streaming FPGA accelerators for quantized neural networks.

Python API::

    import fpgagen
    result = fpgagen.build("model.onnx", "out", board="pynq-z2", target_fps=10_000)
    sim = fpgagen.simulate("out", count=100)
    y = fpgagen.golden("model.onnx", x)      # golden model on float inputs
"""

__version__ = "0.1.0"


# The functions shadow their submodules' names on the package on purpose: the API is
# ``fpgagen.build(...)``; the modules stay importable as ``fpgagen.build`` via sys.modules.
from .build import build  # noqa: E402
from .simulate import simulate  # noqa: E402


def golden(model_or_graph, x):
    """Run the integer golden model on float inputs ``x`` (N, *input_shape[1:]).

    ``model_or_graph`` is an ONNX path, a build directory, or an ``ir.Graph``.
    """
    from pathlib import Path

    from . import reference
    from .build import open_build
    from .frontend import load_model, lower
    from .ir import Graph

    if isinstance(model_or_graph, Graph):
        graph = model_or_graph
    elif Path(model_or_graph).is_dir():
        _, graph, _ = open_build(model_or_graph)
    else:
        graph = lower(load_model(model_or_graph))
    return reference.run(graph, x)


__all__ = ["build", "simulate", "golden", "__version__"]
