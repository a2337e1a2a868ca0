"""fastmlp.export: ONNX files that onnxruntime runs to the same outputs as the model, and a
PyTorch Sequential in both directions.  Skipped where onnx/onnxruntime/torch are absent."""
import subprocess
import sys

import numpy as np
import pytest

import fastmlp
from fastmlp import export

ACTIVATIONS = ["relu", "tanh", "logistic", "identity"]
# (loss, output_activation): every output activation the mse loss allows, and the logits
# of the cross-entropy.
HEADS = [("mse", "identity"), ("mse", "logistic"), ("mse", "tanh"), ("mse", "relu"),
         ("softmax_cross_entropy", "identity")]
DEPTHS = {1: [6, 3], 2: [6, 9, 3], 4: [6, 9, 7, 5, 3]}

# Tolerances against net.forward, as allclose(rtol=R, atol=R·max(1, max|ref|)).  The two
# sides round differently: onnxruntime's Gemm sums in another order than OpenBLAS (error
# ≲ few·width·eps of the output's scale), and its float32 Sigmoid/Tanh are polynomial
# approximations good to about one ulp *absolute* — relatively large for outputs near 0,
# e.g. sigmoid ≈ 2e-5 off by 3e-8 (measured).  Hence the absolute part, scaled to the
# outputs.  float32: R = 1e-5 ≈ 80 ulps at 1.0; measured worst 3e-7.  float64: R = 1e-12,
# thousands of ulps of room; measured worst 5e-16 absolute.
TOL = {np.float32: 1e-5, np.float64: 1e-12}


def assert_close(got, ref, dtype):
    assert got.dtype == ref.dtype and got.shape == ref.shape
    r = TOL[dtype]
    np.testing.assert_allclose(got, ref, rtol=r, atol=r * max(1.0, np.max(np.abs(ref))))


def make_net(sizes, activation, loss, output_activation, dtype, seed=0):
    net = fastmlp.MLP(sizes, activation=activation, loss=loss, dtype=dtype, seed=seed,
                      output_activation=output_activation)
    # Non-zero biases, so that a bias left out or misplaced shows.
    rng = np.random.default_rng(seed + 100)
    for b in net.biases:
        b[...] = rng.normal(scale=0.5, size=b.shape)
    return net


def inputs(n, d, dtype, seed=1):
    # Scale 3 drives tanh/sigmoid into their tails as well as their middle.
    return (3 * np.random.default_rng(seed).normal(size=(n, d))).astype(dtype)


# ------------------------------------------------------------------------------ ONNX

@pytest.fixture(scope="module")
def ort():
    pytest.importorskip("onnx")
    return pytest.importorskip("onnxruntime")


def session(ort, path):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1   # tiny graphs; keep the shared cores free
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("loss,output_activation", HEADS)
@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("depth", sorted(DEPTHS))
def test_onnx_matches_forward(ort, tmp_path, depth, activation, loss, output_activation,
                              dtype):
    import onnx
    net = make_net(DEPTHS[depth], activation, loss, output_activation, dtype)
    path = tmp_path / "net.onnx"
    returned = export.to_onnx(net, path)
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)   # also infers and checks shapes
    assert model == returned
    sess = session(ort, path)
    names = [o.name for o in sess.get_outputs()]
    if loss == "softmax_cross_entropy":
        assert names == ["output", "probabilities"]
    else:
        assert names == ["output"]
    # One symbolic batch dimension, so a 1-row and a 17-row batch both run.
    assert sess.get_inputs()[0].shape[0] == "batch"
    for n in (1, 17):
        X = inputs(n, DEPTHS[depth][0], dtype)
        outs = sess.run(None, {"input": X})
        assert_close(outs[0], net.forward(X), dtype)
        if loss == "softmax_cross_entropy":
            assert_close(outs[1], net.predict_proba(X), dtype)


def test_onnx_graph_structure(ort, tmp_path):
    """One Gemm per layer, the weights as stored (d_in, d_out), dtype preserved."""
    import onnx
    from onnx import numpy_helper
    net = make_net([6, 9, 7, 3], "tanh", "mse", "logistic", np.float64)
    model = export.to_onnx(net, tmp_path / "net.onnx")
    ops = [node.op_type for node in model.graph.node]
    assert ops == ["Gemm", "Tanh", "Gemm", "Tanh", "Gemm", "Sigmoid"]
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    for l, (W, b) in enumerate(zip(net.weights, net.biases), start=1):
        assert inits[f"W{l}"].dtype == np.float64
        assert np.array_equal(inits[f"W{l}"], W) and np.array_equal(inits[f"b{l}"], b)
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.DOUBLE
    assert model.opset_import[0].version == export.DEFAULT_OPSET


def test_onnx_snapshot_not_view(ort, tmp_path):
    """The file holds the parameters at export time, not a live view of them."""
    net = make_net([4, 5, 2], "relu", "mse", "identity", np.float32)
    X = inputs(3, 4, np.float32)
    before = net.forward(X)
    export.to_onnx(net, tmp_path / "net.onnx")
    net.params[...] += 1
    assert_close(session(ort, tmp_path / "net.onnx").run(None, {"input": X})[0], before,
                 np.float32)


def test_onnx_opset_choice(ort, tmp_path):
    net = make_net([4, 5, 3], "relu", "softmax_cross_entropy", "identity", np.float32)
    X = inputs(5, 4, np.float32)
    model = export.to_onnx(net, tmp_path / "a.onnx", opset=export.MIN_OPSET)
    assert model.opset_import[0].version == export.MIN_OPSET
    outs = session(ort, tmp_path / "a.onnx").run(["probabilities"], {"input": X})
    assert_close(outs[0], net.predict_proba(X), np.float32)
    with pytest.raises(ValueError, match="^opset: "):
        export.to_onnx(net, tmp_path / "b.onnx", opset=11)
    with pytest.raises(TypeError, match="^opset: "):
        export.to_onnx(net, tmp_path / "b.onnx", opset="17")
    with pytest.raises(TypeError, match="^net: "):
        export.to_onnx(object(), tmp_path / "b.onnx")


def test_to_onnx_without_onnx_says_how_to_install(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "onnx", None)   # `import onnx` now raises ImportError
    net = make_net([3, 2], "relu", "mse", "identity", np.float32)
    with pytest.raises(ImportError, match=r"pip install fastmlp\[onnx\]"):
        export.to_onnx(net, tmp_path / "net.onnx")
    assert not (tmp_path / "net.onnx").exists()


def test_import_fastmlp_imports_neither_onnx_nor_torch(tmp_path):
    code = ("import sys, fastmlp, fastmlp.export; "
            "print(sorted({'onnx', 'onnxruntime', 'torch'} & set(sys.modules)))")
    # From an empty folder, so the uncompiled source tree cannot shadow the installed package.
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=tmp_path, timeout=60, check=True)
    assert res.stdout.strip() == "[]"


# ---------------------------------------------------------------------------- PyTorch

@pytest.fixture(scope="module")
def torch():
    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)
    return torch


def torch_forward(torch, seq, X):
    with torch.no_grad():
        return seq(torch.from_numpy(X)).numpy()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("loss,output_activation", HEADS)
@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("depth", sorted(DEPTHS))
def test_torch_round_trip(torch, depth, activation, loss, output_activation, dtype):
    net = make_net(DEPTHS[depth], activation, loss, output_activation, dtype)
    seq = export.to_torch(net)
    linears = [m for m in seq if isinstance(m, torch.nn.Linear)]
    assert len(linears) == depth
    for lin, W, b in zip(linears, net.weights, net.biases):
        assert lin.weight.dtype == (torch.float64 if dtype == np.float64 else torch.float32)
        assert np.array_equal(lin.weight.detach().numpy(), W.T)
        assert np.array_equal(lin.bias.detach().numpy(), b)
    for n in (1, 17):
        X = inputs(n, DEPTHS[depth][0], dtype)
        # Same tolerance reasoning as ONNX: torch's GEMM sums in its own order.
        assert_close(torch_forward(torch, seq, X), net.forward(X), dtype)
    back = export.from_torch(seq, loss=loss)
    assert back.layer_sizes == net.layer_sizes and back.dtype == net.dtype
    if depth > 1:   # without hidden layers the hidden activation is not recorded
        assert back.activation == activation
    assert back.output_activation == output_activation
    # Parameters come back bit for bit.
    assert back.params.tobytes() == net.params.tobytes()


def test_to_torch_copies(torch):
    net = make_net([4, 5, 2], "relu", "mse", "identity", np.float64)
    seq = export.to_torch(net)
    before = seq[0].weight.detach().clone()
    net.params[...] += 1
    assert torch.equal(seq[0].weight.detach(), before)


def test_from_torch_options_and_bias_free_linear(torch):
    nn = torch.nn
    seq = nn.Sequential(nn.Linear(3, 4, bias=False), nn.Identity(), nn.Linear(4, 2)).double()
    net = export.from_torch(seq, loss="softmax_cross_entropy", optimizer="adam", l2=0.1)
    assert net.optimizer == "adam" and net.l2 == 0.1 and net.activation == "identity"
    assert net.dtype == np.float64 and np.all(net.biases[0] == 0)
    X = inputs(6, 3, np.float64)
    assert_close(net.forward(X), torch_forward(torch, seq, X), np.float64)
    # The result trains like any MLP.
    net.fit(X, np.array([0, 1, 0, 1, 0, 1]), epochs=2)
    with pytest.raises(TypeError, match="dtype"):
        export.from_torch(seq, dtype=np.float32)


def _bad_sequentials(nn):
    lin = nn.Linear
    return [
        (nn.Sequential(lin(3, 4), nn.Dropout(0.1)), ValueError, r"seq\[1\]: Dropout"),
        (nn.Sequential(nn.Conv1d(1, 1, 3)), TypeError, r"seq\[0\]: Conv1d"),
        (nn.Sequential(lin(3, 4), nn.BatchNorm1d(4), lin(4, 2)), TypeError,
         r"seq\[1\]: BatchNorm1d"),
        (nn.Sequential(lin(3, 4), nn.Hardswish(), lin(4, 2)), TypeError, r"seq\[1\]: Hardswish"),
        (nn.Sequential(lin(3, 4), nn.GELU(approximate="tanh"), lin(4, 2)), ValueError,
         r"seq\[1\]: GELU"),
        (nn.Sequential(lin(3, 4), nn.Softmax(dim=1)), TypeError, r"seq\[1\]: Softmax"),
        (nn.Sequential(nn.Sequential(lin(3, 4))), TypeError, r"seq\[0\]: Sequential"),
        (nn.Sequential(lin(3, 4), nn.ReLU(), nn.ReLU()), ValueError, r"seq\[2\]: ReLU"),
        (nn.Sequential(nn.ReLU(), lin(3, 4)), ValueError, r"seq\[0\]: ReLU"),
        (nn.Sequential(lin(3, 4), nn.LeakyReLU(0.2), lin(4, 2)), ValueError,
         r"seq\[1\]: LeakyReLU"),
        (nn.Sequential(lin(3, 4), nn.ReLU(), lin(5, 2)), ValueError, r"seq\[2\]: in_features"),
        (nn.Sequential(lin(3, 4), lin(4, 2).double()), TypeError, "mix dtypes"),
        (nn.Sequential(lin(3, 4).half()), TypeError, r"seq\[0\]: .*float16"),
        (nn.Sequential(), ValueError, "no Linear"),
        ([lin(3, 4)], TypeError, "^seq: expected a torch.nn.Sequential"),
    ]


def test_from_torch_refuses_what_it_cannot_represent(torch):
    for seq, error, message in _bad_sequentials(torch.nn):
        with pytest.raises(error, match=message):
            export.from_torch(seq)


def test_from_torch_cross_entropy_has_no_output_activation(torch):
    nn = torch.nn
    seq = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2), nn.Sigmoid())
    with pytest.raises(ValueError, match=r"seq\[3\].*logits"):
        export.from_torch(seq, loss="softmax_cross_entropy")
    assert export.from_torch(seq, loss="mse").output_activation == "logistic"


def test_torch_missing_says_so(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)
    net = make_net([3, 2], "relu", "mse", "identity", np.float32)
    with pytest.raises(ImportError, match="pip install torch"):
        export.to_torch(net)
