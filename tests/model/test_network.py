"""The network: shapes, validation, and an ONNX export that keeps dynamic spatial axes."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from screen.model.export import export_onnx
from screen.model.network import CLASSES, UNet3D, WithSoftmax

# Operators that ONNX Runtime, TensorRT and INT8 Q/DQ quantization all handle.
ALLOWED_OPS = {"Conv", "ConvTranspose", "Relu", "MaxPool", "Concat", "Softmax", "Identity"}


def test_logits_have_one_channel_per_class_and_the_input_size():
    net = UNet3D((4, 8, 16)).eval()
    with torch.no_grad():
        out = net(torch.zeros(1, 1, 8, 16, 24))
    assert out.shape == (1, len(CLASSES), 8, 16, 24)
    assert net.shape_multiple == 4


def test_bad_widths_are_refused():
    with pytest.raises(ValueError, match="at least two positive"):
        UNet3D((8,))
    with pytest.raises(ValueError, match="n_classes must be >= 2"):
        UNet3D((4, 8), n_classes=1)


def test_onnx_export_is_dynamic_uses_safe_operators_and_matches_torch(tmp_path):
    torch.manual_seed(0)
    net = UNet3D((4, 8, 16))
    # Train-mode statistics would differ from the folded export; give BatchNorm real ones.
    with torch.no_grad():
        net(torch.randn(2, 1, 16, 16, 16))
    net.eval()
    path = tmp_path / "net.onnx"
    export_onnx(net, path)
    model = onnx.load(str(path))
    onnx.checker.check_model(model)
    ops = {node.op_type for node in model.graph.node}
    assert ops <= ALLOWED_OPS, ops - ALLOWED_OPS
    assert "BatchNormalization" not in ops  # folded into the convolutions
    dims = [d.dim_param for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert dims[2:] == ["k", "j", "i"]
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    module = WithSoftmax(net).eval()
    for shape in ((1, 1, 8, 16, 24), (1, 1, 16, 12, 20)):
        x = np.random.default_rng(1).normal(size=shape).astype(np.float32)
        got = session.run(None, {"image": x})[0]
        with torch.no_grad():
            want = module(torch.from_numpy(x)).numpy()
        assert got.shape == (1, 3, *shape[2:])
        np.testing.assert_allclose(got, want, atol=1e-4)
