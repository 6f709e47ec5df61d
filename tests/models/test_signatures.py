"""Model signatures: declared in a small file, checked against the graph, carried by the choice."""

from __future__ import annotations

import re

import numpy as np
import pytest
from temporalio.converter import DataConverter

from domain.contracts import FaceObservation, ModelChoice
from domain.signatures import ModelSignature, OutputSignature, SignatureError, check_tensors
from models.face.inputs import model_input, read_score, scaled_box
from models.lifecycle.sources import SIGNATURES

MINIFASNET_V2 = """
[input]
tensor = "input"
region = "face-box"
scale = 2.7
fit = "shift"
size = [80, 80]
colour = "BGR"
mean = 0
std = 1

[output]
tensor = "logits"
kind = "logits"
positive_class = 1
"""


def test_a_signature_file_is_read_and_written_back() -> None:
    signature = ModelSignature.parse(MINIFASNET_V2)
    (item,) = signature.inputs
    assert (item.size, item.scale, item.mean, item.layout) == ([80, 80], 2.7, [0.0], "NCHW")
    assert signature.item_shape() == [3, 80, 80]
    assert ModelSignature.parse(signature.to_toml()) == signature
    assert signature.label() == "face-boxx2.7-80x80-BGR-logits"
    assert "x2.7 about its centre (shift)" in signature.describe()[0]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (MINIFASNET_V2.replace('"BGR"', '"CMYK"'), "input colour 'CMYK' is not one of"),
        (MINIFASNET_V2.replace("positive_class = 1", ""), "a logits output needs positive_class"),
        (MINIFASNET_V2.replace("size = [80, 80]", "size = [80]"), "input size must be"),
        (MINIFASNET_V2.replace("std = 1", "std = [1, 1]"), "input std takes 1 or 3 numbers"),
        (MINIFASNET_V2.replace("scale = 2.7", "zoom = 2.7"), "unknown keys in [input]: ['zoom']"),
        (MINIFASNET_V2.split("[output]")[0], "the signature needs an [output] table"),
        ("[input", "the signature file is not valid toml"),
    ],
)
def test_bad_signatures_are_refused_in_one_line(text: str, message: str) -> None:
    with pytest.raises(SignatureError, match=message.replace("[", r"\[").replace("]", r"\]")):
        ModelSignature.parse(text)


def test_the_graph_check_names_the_tensor_and_both_shapes() -> None:
    signature = ModelSignature.parse(MINIFASNET_V2)
    outputs = {"logits": ["batch", 3]}
    check_tensors(signature, {"input": ["batch", 3, 80, 80]}, outputs)
    check_tensors(signature, {"input": [1, 3, 80, 80]}, outputs)
    with pytest.raises(SignatureError) as refused:
        check_tensors(signature, {"input": [1, 3, 128, 128]}, outputs)
    assert str(refused.value) == (
        "input tensor 'input' has shape [1, 3, 128, 128] in the ONNX graph; "
        "the signature needs [N, 3, 80, 80]"
    )
    with pytest.raises(SignatureError, match=re.escape("shape [4, 3, 80, 80]")):
        check_tensors(signature, {"input": [4, 3, 80, 80]}, outputs)
    with pytest.raises(SignatureError, match="output tensor 'logits'; the ONNX graph's outputs"):
        check_tensors(signature, {"input": [1, 3, 80, 80]}, {"prob": [1, 3]})
    with pytest.raises(SignatureError, match="reads class 1, which needs \\[N, >=2\\]"):
        check_tensors(signature, {"input": [1, 3, 80, 80]}, {"logits": [1, 1]})


def test_every_manifest_model_has_a_signature_and_it_crosses_temporal() -> None:
    choice = ModelChoice("liveness", "m", "1", "0" * 64, signature=SIGNATURES["faceplugin-fr-pose"])
    converter = DataConverter.default
    (payload,) = converter.payload_converter.to_payloads([choice])
    (back,) = converter.payload_converter.from_payloads([payload], [ModelChoice])
    assert back == choice
    legacy = converter.payload_converter.to_payloads(
        [{"task": "embed", "name": "a", "version": "1", "sha256": "0"}]
    )
    (old,) = converter.payload_converter.from_payloads(legacy, [ModelChoice])
    assert old.signature is None  # choices recorded before signatures still decode


def test_inputs_follow_the_signature_not_the_model() -> None:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (200, 300, 3), dtype=np.uint8)
    face = FaceObservation(box=[100, 60, 160, 120], landmarks5=[[0, 0]] * 5, detection_score=1.0)
    v2 = ModelSignature.parse(MINIFASNET_V2)
    item = model_input(v2, image, face)
    assert item.shape == (3, 80, 80) and item.dtype == np.float32
    # raw B, G, R values: the blue plane is the image's third channel
    assert abs(float(item[0].mean()) - float(image[..., 2].mean())) < 10
    # The Silent-Face crop: 2.7x the 60 px box is 162 px, shifted to stay inside 300x200.
    assert scaled_box((100, 60, 160, 120), 2.7, "shift", 300, 200) == pytest.approx(
        (49.0, 9.0, 211.0, 171.0)
    )
    fused = ModelSignature(
        [v2.inputs[0], type(v2.inputs[0])(**{**vars(v2.inputs[0]), "scale": 4.0})],
        OutputSignature("probabilities", "probabilities", positive_class=1),
        members=["a@1", "b@1"],
    )
    stacked = model_input(fused, image, face)
    assert stacked.shape == (2, 3, 80, 80)
    assert np.array_equal(stacked[0], item) and not np.array_equal(stacked[1], item)
    assert read_score(fused.output, {"probabilities": np.array([0.1, 0.7, 0.2])}) == 0.7
    assert read_score(v2.output, {"logits": np.log(np.array([0.2, 0.5, 0.3]))}) == pytest.approx(
        0.5
    )
