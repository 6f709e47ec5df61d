"""Model signatures: what a model version takes and how its output is read.

A signature is declared when a version is registered (the manifest, or a small
TOML/JSON file given to ``idflow models import``), checked against the ONNX
graph, stored with the version and travels with its ``ModelChoice``; the face
pipeline builds the model's input from it. Example (MiniFASNet V2)::

    [input]
    tensor = "input"
    region = "face-box"   # image | face-box | face-points | eye-box
    scale = 2.7           # box side multiplier about its centre
    fit = "shift"         # shift (keep the scaled box inside) | clip
    size = [80, 80]       # width, height
    colour = "BGR"        # BGR | RGB | grey
    mean = 0              # value = (pixel 0..255 - mean) / std, per channel or one number
    std = 1
    layout = "NCHW"       # NCHW | NHWC

    [output]
    tensor = "logits"
    kind = "logits"       # logits (softmax) | probabilities | embedding | raw
    positive_class = 1    # the class whose probability is the score (liveness: bona fide)

A fused model (several models in one graph, their inputs stacked on axis 1)
lists one ``[[input]]`` per member and names its members.
Stdlib only: the workflow, the registry and the pipeline share it. No postponed
annotations here: the workflow sandbox resolves dataclass field types without this
module's globals.
"""

import json
import tomllib
from dataclasses import asdict, dataclass, field
from typing import Any

REGIONS = {
    "image": "the whole image",
    "face-box": "the detected face box",
    "face-points": "the five landmarks, similarity-aligned to the ArcFace template",
    "eye-box": "a square around each eye",
}
FITS = ("shift", "clip")
COLOURS = {"BGR": 3, "RGB": 3, "grey": 1}
LAYOUTS = ("NCHW", "NHWC")
OUTPUT_KINDS = {
    "logits": "softmax over the classes; score = p[positive_class]",
    "probabilities": "class probabilities; score = p[positive_class]",
    "embedding": "a vector, L2-normalised; score = cosine similarity",
    "raw": "read by the stage's own decoder (boxes, points, angles)",
}


class SignatureError(ValueError):
    """A signature that is incomplete, inconsistent or does not fit its model (one line)."""


@dataclass(frozen=True)
class InputSignature:
    tensor: str
    region: str
    size: list[int]  # width, height
    colour: str
    mean: list[float]
    std: list[float]
    layout: str = "NCHW"
    scale: float = 1.0
    fit: str = "clip"

    @property
    def channels(self) -> int:
        return COLOURS[self.colour]

    def item_shape(self) -> list[int]:
        """Shape of one item (no batch axis)."""
        width, height = self.size
        if self.layout == "NCHW":
            return [self.channels, height, width]
        return [height, width, self.channels]

    def describe(self) -> str:
        crop = REGIONS[self.region]
        if self.region in ("face-box", "eye-box") and self.scale != 1:
            crop += f" x{self.scale:g} about its centre ({self.fit})"
        values = _values(self.mean, self.std)
        return (
            f"`{self.tensor}`: {crop}, {self.size[0]}x{self.size[1]} {self.colour}, "
            f"{values}, {self.layout}"
        )


@dataclass(frozen=True)
class OutputSignature:
    tensor: str
    kind: str
    positive_class: int | None = None
    notes: str = ""  # what a raw decoder does, in words

    def describe(self) -> str:
        text = f"`{self.tensor}` {self.kind}: {OUTPUT_KINDS[self.kind]}"
        if self.positive_class is not None:
            text = text.replace("positive_class", str(self.positive_class))
        return text + (f"; {self.notes}" if self.notes else "")


@dataclass(frozen=True)
class ModelSignature:
    inputs: list[InputSignature]
    output: OutputSignature
    members: list[str] = field(default_factory=list)  # fused models: name@version sha256

    def __post_init__(self) -> None:
        _validate(self)

    @property
    def stacked(self) -> bool:
        """Several crops stacked on axis 1 of one input tensor (a fused model)."""
        return len(self.inputs) > 1

    def item_shape(self) -> list[int]:
        first = self.inputs[0].item_shape()
        return [len(self.inputs), *first] if self.stacked else first

    def label(self) -> str:
        """A short label (the registry's preprocessing column)."""
        parts = []
        for i in self.inputs:
            scale = f"x{i.scale:g}" if i.scale != 1 else ""
            parts.append(f"{i.region}{scale}-{i.size[0]}x{i.size[1]}-{i.colour}")
        return ("+".join(parts) + f"-{self.output.kind}")[:64]

    def describe(self) -> list[str]:
        lines = [f"input {i.describe()}" for i in self.inputs]
        if self.stacked:
            lines.append(f"inputs stacked on axis 1 in this order: {self.item_shape()} per item")
        lines.append(f"output {self.output.describe()}")
        lines += [f"member {member}" for member in self.members]
        return lines

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelSignature":
        """From a parsed file or a stored row: ``input`` (a table or a list) and ``output``."""
        if not isinstance(data, dict):
            raise SignatureError("a signature is a table with [input] and [output]")
        unknown = set(data) - {"input", "inputs", "output", "members"}
        if unknown:
            raise SignatureError(f"unknown signature sections {sorted(unknown)}")
        inputs = data.get("inputs", data.get("input"))
        if isinstance(inputs, dict):
            inputs = [inputs]
        if not isinstance(inputs, list) or not inputs:
            raise SignatureError("the signature needs an [input] table (or [[input]] per member)")
        output = data.get("output")
        if not isinstance(output, dict):
            raise SignatureError("the signature needs an [output] table")
        return cls(
            inputs=[_input(item) for item in inputs],
            output=_build(OutputSignature, output, "output"),
            members=[str(m) for m in data.get("members", [])],
        )

    @classmethod
    def parse(cls, text: str, suffix: str = ".toml") -> "ModelSignature":
        """From the text of a ``.toml`` or ``.json`` signature file."""
        try:
            data = json.loads(text) if suffix == ".json" else tomllib.loads(text)
        except (ValueError, tomllib.TOMLDecodeError) as error:
            raise SignatureError(f"the signature file is not valid {suffix[1:]}: {error}") from None
        return cls.from_dict(data)

    def to_toml(self) -> str:
        """The signature as the TOML an import takes (a template for new models)."""
        lines = []
        for item in self.inputs:
            lines.append("[[input]]" if self.stacked else "[input]")
            lines += [f"{k} = {_toml(v)}" for k, v in asdict(item).items()]
            lines.append("")
        lines.append("[output]")
        lines += [
            f"{k} = {_toml(v)}" for k, v in asdict(self.output).items() if v not in ("", None)
        ]
        if self.members:
            lines = [f"members = {_toml(self.members)}", "", *lines]
        return "\n".join(lines) + "\n"


def _input(data: Any) -> InputSignature:
    if not isinstance(data, dict):
        raise SignatureError("each [input] is a table")
    data = dict(data)
    for key in ("mean", "std"):
        value = data.get(key)
        if isinstance(value, int | float):
            data[key] = [float(value)]
    return _build(InputSignature, data, "input")


def _build(kind: type, data: dict[str, Any], section: str) -> Any:
    names = set(kind.__dataclass_fields__)
    unknown = set(data) - names
    if unknown:
        raise SignatureError(
            f"unknown keys in [{section}]: {sorted(unknown)}; known: {sorted(names)}"
        )
    try:
        return kind(**data)
    except TypeError as error:
        missing = str(error).partition("argument")[2].strip(": ") or str(error)
        raise SignatureError(f"[{section}] is missing {missing}") from None


def _validate(signature: ModelSignature) -> None:
    for item in signature.inputs:
        if item.region not in REGIONS:
            raise SignatureError(f"input region {item.region!r} is not one of {sorted(REGIONS)}")
        if item.colour not in COLOURS:
            raise SignatureError(f"input colour {item.colour!r} is not one of {sorted(COLOURS)}")
        if item.layout not in LAYOUTS:
            raise SignatureError(f"input layout {item.layout!r} is not one of {list(LAYOUTS)}")
        if item.fit not in FITS:
            raise SignatureError(f"input fit {item.fit!r} is not one of {list(FITS)}")
        if len(item.size) != 2 or not all(isinstance(v, int) and v > 0 for v in item.size):
            raise SignatureError(f"input size must be [width, height] in pixels, got {item.size}")
        if not isinstance(item.scale, int | float) or not 0 < item.scale <= 16:
            raise SignatureError(f"input scale must be in (0, 16], got {item.scale!r}")
        for name, values in (("mean", item.mean), ("std", item.std)):
            if len(values) not in (1, item.channels):
                raise SignatureError(
                    f"input {name} takes 1 or {item.channels} numbers for {item.colour}, "
                    f"got {len(values)}"
                )
        if any(v == 0 for v in item.std):
            raise SignatureError("input std must not be 0")
    shapes = {tuple(i.item_shape()) for i in signature.inputs}
    if len(shapes) > 1 or len({i.tensor for i in signature.inputs}) > 1:
        raise SignatureError(
            "stacked inputs share one tensor and one crop shape; got "
            f"{sorted({i.tensor for i in signature.inputs})} {sorted(shapes)}"
        )
    out = signature.output
    if out.kind not in OUTPUT_KINDS:
        raise SignatureError(f"output kind {out.kind!r} is not one of {sorted(OUTPUT_KINDS)}")
    needs_class = out.kind in ("logits", "probabilities")
    if needs_class and (not isinstance(out.positive_class, int) or out.positive_class < 0):
        raise SignatureError(f"a {out.kind} output needs positive_class (the class scored)")


def _values(mean: list[float], std: list[float]) -> str:
    def one(values: list[float]) -> str:
        return (
            f"{values[0]:g}"
            if len(set(values)) == 1
            else "(" + ", ".join(f"{v:g}" for v in values) + ")"
        )

    if set(mean) == {0} and set(std) == {1}:
        return "raw 0..255"
    return f"(x - {one(mean)}) / {one(std)}"


def _toml(value: Any) -> str:
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return f"{value:g}" if isinstance(value, float) else str(value)


Shape = list[int | str | None]  # a graph's tensor shape: ints, or names/None for free axes


def check_tensors(
    signature: ModelSignature, inputs: dict[str, Shape], outputs: dict[str, Shape]
) -> None:
    """Refuse a signature that does not fit the graph's tensors (``SignatureError``, one line
    naming the tensor and both shapes)."""
    tensor = signature.inputs[0].tensor
    if tensor not in inputs:
        raise SignatureError(
            f"the signature feeds input tensor {tensor!r}; the ONNX graph's inputs are "
            f"{sorted(inputs)}"
        )
    if len(inputs) > 1:
        raise SignatureError(
            f"the ONNX graph has {len(inputs)} inputs {sorted(inputs)}; one is fed"
        )
    expected: Shape = ["N", *signature.item_shape()]
    if not _fits(inputs[tensor], expected):
        raise SignatureError(
            f"input tensor {tensor!r} has shape {_shape(inputs[tensor])} in the ONNX graph; "
            f"the signature needs {_shape(expected)}"
        )
    out = signature.output
    if out.tensor not in outputs:
        raise SignatureError(
            f"the signature reads output tensor {out.tensor!r}; the ONNX graph's outputs are "
            f"{sorted(outputs)}"
        )
    shape = outputs[out.tensor]
    if out.kind in ("logits", "probabilities"):
        classes = shape[-1] if shape else None
        if len(shape) != 2 or (isinstance(classes, int) and classes <= out.positive_class):
            raise SignatureError(
                f"output tensor {out.tensor!r} has shape {_shape(shape)} in the ONNX graph; "
                f"the signature reads class {out.positive_class}, which needs "
                f"[N, >={out.positive_class + 1}]"
            )
    if out.kind == "embedding" and len(shape) != 2:
        raise SignatureError(
            f"output tensor {out.tensor!r} has shape {_shape(shape)} in the ONNX graph; "
            f"an embedding needs [N, dimension]"
        )


def _fits(actual: Shape, expected: Shape) -> bool:
    if len(actual) != len(expected):
        return False
    batch, *rest = actual
    if isinstance(batch, int) and batch != 1:  # a fixed batch other than 1 takes no single item
        return False
    return all(not isinstance(a, int) or a == e for a, e in zip(rest, expected[1:], strict=True))


def _shape(shape: Shape) -> str:
    return "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"
