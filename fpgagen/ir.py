"""The dataflow IR: small, typed, immutable, and serialisable to JSON.

``Tensor`` is a stream between nodes; ``Node`` holds a typed per-kind spec;
``Graph`` is the hardware part of the network plus the host-side float ops that run
before it (pre-processing up to the first quantizer) and after it (dequantization).
"""

from __future__ import annotations

import base64
import dataclasses
import heapq
import json
import zlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .dtypes import IntType, parse_type
from .errors import SpecError


@dataclass(frozen=True, eq=False)
class Tensor:
    name: str
    shape: tuple[int, ...]  # per frame, C order; the stream carries it flattened
    dtype: IntType
    scale: np.ndarray | None = None  # float value = int * scale (host view); None inside

    @property
    def elems(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))


@dataclass(frozen=True, eq=False)
class HostOp:
    """One float op run on the host in numpy, with ONNX semantics.

    ``operands`` lists the op's inputs in ONNX order: ``None`` stands for the data
    flowing through, anything else is a constant array.
    """

    op: str
    operands: tuple[np.ndarray | None, ...] = (None,)
    attrs: dict[str, Any] = field(default_factory=dict)
    name: str = ""


@dataclass(frozen=True, eq=False)
class Node:
    name: str
    spec: Any  # a registered spec dataclass (see fpgagen.nodes)
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]

    @property
    def kind(self) -> str:
        from .nodes import kind_of

        return kind_of(self.spec)


@dataclass(frozen=True, eq=False)
class Edge:
    """One stream between two nodes: ``producer``'s port ``out_port`` carries ``tensor``
    into input ``index`` (port ``in_port``) of ``consumer``."""

    tensor: str
    producer: Node
    out_port: str
    consumer: Node
    index: int
    in_port: str

    @property
    def source(self):
        """The producer's ``nodes.Port`` view of the stream."""
        from .nodes import port

        return port(self.producer.spec, self.out_port)

    @property
    def sink(self):
        """The consumer's ``nodes.Port`` view of the stream."""
        from .nodes import port

        return port(self.consumer.spec, self.in_port)


@dataclass(frozen=True, eq=False)
class Graph:
    nodes: tuple[Node, ...]
    tensors: dict[str, Tensor]
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    host_pre: tuple[HostOp, ...] = ()
    host_post: tuple[HostOp, ...] = ()
    meta: dict[str, Any] = field(default_factory=dict)

    def producer(self, tensor: str) -> Node | None:
        for node in self.nodes:
            if tensor in node.outputs:
                return node
        return None

    def consumers(self, tensor: str) -> list[Node]:
        return [node for node in self.nodes if tensor in node.inputs]

    def node(self, name: str) -> Node:
        for node in self.nodes:
            if node.name == name:
                return node
        raise KeyError(name)

    def replace(self, **changes) -> Graph:
        return dataclasses.replace(self, **changes)

    def uses(self, tensor: str) -> list[tuple[Node, int]]:
        """Every node input reading ``tensor``: (node, input index), in node order."""
        return [(node, k) for node in self.nodes
                for k, name in enumerate(node.inputs) if name == tensor]

    def edges(self) -> list[Edge]:
        """Every node-to-node stream, consumers in topological order (see ``Edge``).

        A tensor read by several inputs gives several edges (a fork before the
        ``forks`` pass); graph inputs and outputs are not edges.
        """
        from .nodes import in_ports, out_ports

        made = {t: (n, k) for n in self.nodes for k, t in enumerate(n.outputs)}
        found = []
        for node in self.topo():
            for k, t in enumerate(node.inputs):
                if t in made:
                    producer, j = made[t]
                    found.append(Edge(t, producer, out_ports(producer.spec)[j], node, k,
                                      in_ports(node.spec)[k]))
        return found

    def topo(self) -> list[Node]:
        """The nodes in a topological order (producers before consumers).

        Deterministic: among the nodes ready at each step, the graph's own order wins,
        so a chain comes out in stream order. Works for any DAG (forks and joins).
        """
        waiting = {}  # node index -> inputs not produced yet
        readers: dict[str, list[int]] = {}
        for k, node in enumerate(self.nodes):
            missing = {t for t in node.inputs if t not in self.inputs}
            waiting[k] = len(missing)
            for t in missing:
                readers.setdefault(t, []).append(k)
        ready = [k for k, count in waiting.items() if count == 0]
        heapq.heapify(ready)
        order = []
        while ready:
            node = self.nodes[heapq.heappop(ready)]
            order.append(node)
            for t in node.outputs:
                for k in readers.pop(t, ()):
                    waiting[k] -= 1
                    if waiting[k] == 0:
                        heapq.heappush(ready, k)
        if len(order) != len(self.nodes):
            done = {id(n) for n in order}
            stuck = next(n for n in self.nodes if id(n) not in done)
            produced = set(self.inputs).union(*(n.outputs for n in order))
            missing = next(t for t in stuck.inputs if t not in produced)
            raise SpecError(f"input {missing!r} is never produced (a cycle or a dangling "
                            "tensor)", where=f"node '{stuck.name}'")
        return order

    def chain(self) -> list[Node]:
        """The nodes in stream order; the graph must be a single chain (see ``topo``)."""
        order, tensor = [], self.inputs[0]
        while tensor not in self.outputs:
            consumers = self.consumers(tensor)
            if len(consumers) != 1:
                raise SpecError(f"tensor '{tensor}' has {len(consumers)} consumers; "
                                "this graph is not a single stream chain")
            order.append(consumers[0])
            tensor = consumers[0].outputs[0]
        if len(order) != len(self.nodes):
            raise SpecError("graph has nodes outside the input-to-output chain")
        return order

    # ---- serialisation -------------------------------------------------------
    def to_json(self) -> str:
        from .nodes import kind_of

        doc = {
            "format": "fpgagen-graph/1",
            "inputs": list(self.inputs),
            "outputs": list(self.outputs),
            "tensors": [_enc({"name": t.name, "shape": list(t.shape), "dtype": t.dtype,
                              "scale": t.scale}) for t in self.tensors.values()],
            "nodes": [{"name": n.name, "kind": kind_of(n.spec), "inputs": list(n.inputs),
                       "outputs": list(n.outputs), "spec": _enc_spec(n.spec)}
                      for n in self.nodes],
            "host_pre": [_enc(dataclasses.asdict(op)) for op in self.host_pre],
            "host_post": [_enc(dataclasses.asdict(op)) for op in self.host_post],
            "meta": _enc(self.meta),
        }
        return json.dumps(doc, indent=1, sort_keys=False) + "\n"

    @staticmethod
    def from_json(text: str) -> Graph:
        from .nodes import spec_class

        doc = json.loads(text)
        if doc.get("format") != "fpgagen-graph/1":
            raise SpecError("not an fpgagen graph.json (format field missing or unknown)")
        tensors = {}
        for t in doc["tensors"]:
            t = _dec(t)
            tensors[t["name"]] = Tensor(t["name"], tuple(t["shape"]), t["dtype"], t["scale"])
        nodes = []
        for n in doc["nodes"]:
            cls = spec_class(n["kind"])
            spec = cls(**{k: _dec(v) for k, v in n["spec"].items()})
            nodes.append(Node(n["name"], spec, tuple(n["inputs"]), tuple(n["outputs"])))

        def host(ops):
            return tuple(HostOp(**{**(d := _dec(op)), "operands": tuple(d["operands"])})
                         for op in ops)

        return Graph(tuple(nodes), tensors, tuple(doc["inputs"]), tuple(doc["outputs"]),
                     host(doc["host_pre"]), host(doc["host_post"]), _dec(doc["meta"]))


def _enc_spec(spec) -> dict:
    return {f.name: _enc(getattr(spec, f.name)) for f in dataclasses.fields(spec)}


def _enc(value):
    if isinstance(value, IntType):
        return {"__dtype__": value.name}
    if isinstance(value, np.ndarray):
        data = np.ascontiguousarray(value)
        return {"__array__": data.dtype.str, "shape": list(data.shape),
                "zlib_b64": base64.b64encode(zlib.compress(data.tobytes(), 6)).decode()}
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {k: _enc(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_enc(v) for v in value]
    return value


def _dec(value):
    if isinstance(value, dict):
        if "__dtype__" in value:
            return parse_type(value["__dtype__"])
        if "__array__" in value:
            raw = zlib.decompress(base64.b64decode(value["zlib_b64"]))
            return np.frombuffer(raw, dtype=np.dtype(value["__array__"])).reshape(
                value["shape"]).copy()
        return {k: _dec(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_dec(v) for v in value]
    return value
