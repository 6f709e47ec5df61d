"""MiniFASNet (Silent-Face-Anti-Spoofing, Apache-2.0) from a PyTorch state dict to ONNX.

Our own description of the architecture, read against the checkpoint's key
names and shapes: widths and kernels come from the weights, the strides and
paddings (which a state dict does not hold) from the description below.

```
conv1      conv 3x3 /2 + BN + PReLU
conv2_dw   depthwise 3x3 + BN + PReLU
conv_23    bottleneck /2: 1x1 + BN + PReLU -> depthwise 3x3 /2 + BN + PReLU -> 1x1 + BN
conv_3     residual bottlenecks (stride 1), `model.<i>`
conv_34    bottleneck /2
conv_4     residual bottlenecks
conv_45    bottleneck /2
conv_5     residual bottlenecks
conv_6_sep 1x1 + BN + PReLU
conv_6_dw  depthwise k x k (k = the remaining feature map) + BN, no activation
linear     fully connected (no bias) + BN (1-d)
prob       fully connected (no bias) -> 3 logits (dropout is inactive at inference)
```

V1SE differs from V2 only by a squeeze-and-excitation module (`se_module`:
global average -> 1x1 + BN + ReLU -> 1x1 + BN -> sigmoid, scaling the
channels) after the projection of some residual blocks; which ones is read
from the keys. Batch norms are folded into the weights before them, so the
graph is convolutions, PReLU and adds only.
"""

from __future__ import annotations

import re

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
IR_VERSION = 8  # loadable by every onnxruntime idflow supports
BN_EPS = 1e-5  # PyTorch's BatchNorm default, used by MiniFASNet
FAMILY = "minifasnet"
INPUT, OUTPUT = "input", "logits"
_BOTTLENECKS_DOWN = ("conv_23", "conv_34", "conv_45")
_RESIDUAL_STAGES = ("conv_3", "conv_4", "conv_5")


class ConversionError(ValueError):
    """The checkpoint does not fit the architecture (one line naming the key)."""


def strip_data_parallel(state: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Keys without the ``module.`` prefix that nn.DataParallel adds."""
    return {key.removeprefix("module."): value for key, value in state.items()}


def variant(state: dict[str, np.ndarray]) -> str:
    """``MiniFASNetV1SE`` when any block has a squeeze-and-excitation module, else V2."""
    return "MiniFASNetV1SE" if any(".se_module." in key for key in state) else "MiniFASNetV2"


class _Graph:
    """Nodes and folded initialisers, named after the checkpoint's keys."""

    def __init__(self, state: dict[str, np.ndarray]) -> None:
        self.state = state
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self.used: set[str] = set()

    def weight(self, key: str) -> np.ndarray:
        if key not in self.state:
            raise ConversionError(f"the checkpoint has no {key!r}: not a MiniFASNet state dict")
        self.used.add(key)
        return self.state[key].astype(np.float64)

    def constant(self, name: str, value: np.ndarray) -> str:
        self.initializers.append(numpy_helper.from_array(value.astype(np.float32), name))
        return name

    def node(self, op: str, inputs: list[str], output: str, **attributes) -> str:
        self.nodes.append(helper.make_node(op, inputs, [output], name=output, **attributes))
        return output

    def batch_norm(self, prefix: str) -> tuple[np.ndarray, np.ndarray]:
        """(scale, shift) of the batch norm at ``prefix`` as an affine map per channel."""
        gamma, beta = self.weight(f"{prefix}.weight"), self.weight(f"{prefix}.bias")
        mean, var = self.weight(f"{prefix}.running_mean"), self.weight(f"{prefix}.running_var")
        self.used.add(f"{prefix}.num_batches_tracked")
        scale = gamma / np.sqrt(var + BN_EPS)
        return scale, beta - mean * scale

    def conv_bn(
        self, x: str, prefix: str, channels: int, stride: int = 1, activation: bool = True
    ) -> tuple[str, int]:
        """conv (no bias) + BN [+ PReLU] of the block at ``prefix``; (output, its channels)."""
        kernel = self.weight(f"{prefix}.conv.weight")
        out_channels, per_group, k, _ = kernel.shape
        if channels % per_group:
            raise ConversionError(f"{prefix}.conv.weight {kernel.shape} does not fit {channels} ch")
        scale, shift = self.batch_norm(f"{prefix}.bn")
        y = self.node(
            "Conv",
            [
                x,
                self.constant(f"{prefix}.w", kernel * scale[:, None, None, None]),
                self.constant(f"{prefix}.b", shift),
            ],
            f"{prefix}.conv",
            group=channels // per_group,
            kernel_shape=[k, k],
            strides=[stride, stride],
            pads=[k // 2 if k == 3 else 0] * 4,
        )
        if activation:
            slope = self.weight(f"{prefix}.prelu.weight")[:, None, None]
            y = self.node("PRelu", [y, self.constant(f"{prefix}.slope", slope)], f"{prefix}.prelu")
        return y, out_channels

    def squeeze_excite(self, x: str, prefix: str) -> str:
        pooled = self.node("GlobalAveragePool", [x], f"{prefix}.pool")
        hidden = self.node("Relu", [self._pointwise_bn(pooled, prefix, 1)], f"{prefix}.relu")
        gate = self.node("Sigmoid", [self._pointwise_bn(hidden, prefix, 2)], f"{prefix}.gate")
        return self.node("Mul", [x, gate], f"{prefix}.scaled")

    def _pointwise_bn(self, x: str, prefix: str, index: int) -> str:
        kernel = self.weight(f"{prefix}.fc{index}.weight")
        scale, shift = self.batch_norm(f"{prefix}.bn{index}")
        return self.node(
            "Conv",
            [
                x,
                self.constant(f"{prefix}.fc{index}.w", kernel * scale[:, None, None, None]),
                self.constant(f"{prefix}.fc{index}.b", shift),
            ],
            f"{prefix}.fc{index}",
            kernel_shape=[1, 1],
        )

    def bottleneck(self, x: str, prefix: str, channels: int, stride: int) -> tuple[str, int]:
        y, c = self.conv_bn(x, f"{prefix}.conv", channels)
        y, c = self.conv_bn(y, f"{prefix}.conv_dw", c, stride=stride)
        y, c = self.conv_bn(y, f"{prefix}.project", c, activation=False)
        if f"{prefix}.se_module.fc1.weight" in self.state:
            y = self.squeeze_excite(y, f"{prefix}.se_module")
        return y, c

    def residual_stage(self, x: str, stage: str, channels: int) -> str:
        blocks = sorted(
            {
                int(m.group(1))
                for key in self.state
                if (m := re.match(rf"{stage}\.model\.(\d+)\.", key))
            }
        )
        if not blocks:
            raise ConversionError(f"the checkpoint has no blocks under {stage!r}")
        for index in blocks:
            y, out = self.bottleneck(x, f"{stage}.model.{index}", channels, stride=1)
            if out != channels:
                raise ConversionError(f"{stage}.model.{index} changes {channels} to {out} channels")
            x = self.node("Add", [x, y], f"{stage}.model.{index}.add")
        return x

    def classifier(self, x: str) -> str:
        flat = self.node("Flatten", [x], "flatten", axis=1)
        linear = self.weight("linear.weight")
        scale, shift = self.batch_norm("bn")
        embedding = self.node(
            "Gemm",
            [
                flat,
                self.constant("linear.w", linear * scale[:, None]),
                self.constant("linear.b", shift),
            ],
            "embedding",
            transB=1,
        )
        return self.node(
            "Gemm",
            [embedding, self.constant("prob.w", self.weight("prob.weight"))],
            OUTPUT,
            transB=1,
        )


def minifasnet_onnx(checkpoint: dict[str, np.ndarray], size: tuple[int, int] = (80, 80)) -> bytes:
    """The ONNX model (bytes, deterministic) of a MiniFASNet V2 or V1SE state dict.

    Input ``input`` (N, 3, height, width) float, output ``logits`` (N, classes).
    Raises ``ConversionError`` for a state dict that does not fit the architecture.
    """
    state = strip_data_parallel(checkpoint)
    graph = _Graph(state)
    width, height = size
    x, c = graph.conv_bn(INPUT, "conv1", 3, stride=2)
    x, c = graph.conv_bn(x, "conv2_dw", c)
    for down, stage in zip(_BOTTLENECKS_DOWN, _RESIDUAL_STAGES, strict=True):
        x, c = graph.bottleneck(x, down, c, stride=2)
        x = graph.residual_stage(x, stage, c)
    x, c = graph.conv_bn(x, "conv_6_sep", c)
    feature = -(-height // 16), -(-width // 16)  # four stride-2 steps
    kernel = state.get("conv_6_dw.conv.weight")
    if kernel is not None and tuple(kernel.shape[2:]) != feature:
        raise ConversionError(
            f"conv_6_dw.conv.weight has kernel {tuple(kernel.shape[2:])}, an input of "
            f"{width}x{height} needs {feature}: the checkpoint is for another input size"
        )
    x, c = graph.conv_bn(x, "conv_6_dw", c, activation=False)
    logits = graph.classifier(x)
    unused = sorted(set(state) - graph.used)
    if unused:
        raise ConversionError(
            f"the checkpoint holds keys the architecture does not use: {unused[:3]}"
        )
    classes = state["prob.weight"].shape[0]
    model = helper.make_model(
        helper.make_graph(
            graph.nodes,
            f"{variant(state)}-{width}x{height}",
            [helper.make_tensor_value_info(INPUT, TensorProto.FLOAT, ["batch", 3, height, width])],
            [helper.make_tensor_value_info(logits, TensorProto.FLOAT, ["batch", classes])],
            graph.initializers,
        ),
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="idflow",
        ir_version=IR_VERSION,
    )
    onnx.checker.check_model(model)
    return model.SerializeToString()
