"""fpgagen: bit-exact streaming FPGA accelerators for quantized neural networks.

Python API::

    import fpgagen
    result = fpgagen.build("model.onnx", "out", board="pynq-z2", target_fps=10_000)
    sim = fpgagen.simulate("out", count=100)
    y = fpgagen.golden("model.onnx", x)      # golden model on float inputs
"""

__version__ = "0.1.0"


def build(*args, **kwargs):
    from .build import build as _build

    return _build(*args, **kwargs)


def simulate(*args, **kwargs):
    from .simulate import simulate as _simulate

    return _simulate(*args, **kwargs)


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
