"""Several models as one ONNX graph: their crops stacked on axis 1, their softmax averaged.

Input ``crops`` (N, K, ...) holds member k's input at [:, k]; output
``probabilities`` (N, classes) is the mean of the members' class probabilities
(softmax of logits, or probabilities as they are). One graph means one
session, one batch and one sha256 for the fused decision; the members'
versions are recorded in its signature.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, compose, helper, numpy_helper

from domain.signatures import ModelSignature, OutputSignature

from .minifasnet import IR_VERSION, ConversionError

FUSED_INPUT, FUSED_OUTPUT = "crops", "probabilities"


def fused_signature(members: list[tuple[str, ModelSignature]]) -> ModelSignature:
    """The signature of the fusion of ``members`` (``name@version sha256``, signature)."""
    if len(members) < 2:
        raise ConversionError("a fusion needs at least two members")
    classes = {signature.output.positive_class for _, signature in members}
    kinds = {signature.output.kind for _, signature in members}
    if len(classes) != 1 or not kinds <= {"logits", "probabilities"}:
        raise ConversionError(
            "fused members must all score one class from logits or probabilities; got "
            + ", ".join(
                f"{ref}: {s.output.kind} class {s.output.positive_class}" for ref, s in members
            )
        )
    inputs = []
    for _, signature in members:
        if signature.stacked:
            raise ConversionError("a fused model cannot be a member of another fusion")
        inputs.append(
            type(signature.inputs[0])(**{**vars(signature.inputs[0]), "tensor": FUSED_INPUT})
        )
    return ModelSignature(
        inputs,
        OutputSignature(
            FUSED_OUTPUT,
            "probabilities",
            positive_class=classes.pop(),
            notes=f"mean of the {len(members)} members' class probabilities",
        ),
        members=[ref for ref, _ in members],
    )


def fused_onnx(members: list[tuple[bytes, ModelSignature]]) -> bytes:
    """The fused graph of the member models (ONNX bytes, deterministic)."""
    nodes, initializers, opsets = [], [], set()
    probabilities = []
    classes = None
    for index, (model_bytes, signature) in enumerate(members):
        model = onnx.load_from_string(model_bytes)
        opsets.add(tuple((o.domain, o.version) for o in model.opset_import))
        prefix = f"m{index}."
        graph = compose.add_prefix_graph(model.graph, prefix)
        (member_input,) = [
            i.name for i in graph.input if i.name not in {t.name for t in graph.initializer}
        ]
        output = prefix + signature.output.tensor
        shape = [
            d.dim_value
            for d in next(o for o in graph.output if o.name == output).type.tensor_type.shape.dim
        ]
        classes = classes or shape[-1]
        if shape[-1] != classes:
            raise ConversionError(f"member {index} gives {shape[-1]} classes, member 0 {classes}")
        index_name = f"{prefix}index"
        initializers.append(numpy_helper.from_array(np.array(index, np.int64), index_name))
        nodes.append(helper.make_node("Gather", [FUSED_INPUT, index_name], [member_input], axis=1))
        nodes.extend(graph.node)
        initializers.extend(graph.initializer)
        if signature.output.kind == "logits":
            nodes.append(helper.make_node("Softmax", [output], [f"{prefix}softmax"], axis=1))
            output = f"{prefix}softmax"
        probabilities.append(output)
    if len(opsets) != 1:
        raise ConversionError("fused members must share one ONNX opset")
    nodes.append(helper.make_node("Sum", probabilities, ["sum"]))
    initializers.append(numpy_helper.from_array(np.array(1 / len(members), np.float32), "share"))
    nodes.append(helper.make_node("Mul", ["sum", "share"], [FUSED_OUTPUT]))
    item = members[0][1].item_shape()
    model = helper.make_model(
        helper.make_graph(
            nodes,
            "fused",
            [
                helper.make_tensor_value_info(
                    FUSED_INPUT, TensorProto.FLOAT, ["batch", len(members), *item]
                )
            ],
            [helper.make_tensor_value_info(FUSED_OUTPUT, TensorProto.FLOAT, ["batch", classes])],
            initializers,
        ),
        opset_imports=[helper.make_opsetid(d, v) for d, v in opsets.pop()],
        producer_name="idflow",
        ir_version=IR_VERSION,
    )
    onnx.checker.check_model(model)
    return model.SerializeToString()
