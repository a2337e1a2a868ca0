"""Export an ``MLP`` to ONNX or PyTorch, and import one from a PyTorch ``Sequential``.

``import fastmlp`` never imports this module, and this module imports onnx or torch only
inside the function that needs it, so both stay optional:
``pip install fastmlp[onnx]`` (onnx and onnxruntime) for ``to_onnx``, PyTorch for
``to_torch``/``from_torch``.

Layout: fastmlp is row-major, Z = A·W + b with ``weights[l]`` shaped (d_in, d_out).
ONNX's Gemm takes W as it is; ``torch.nn.Linear`` computes A·weightᵀ + bias with
``weight`` shaped (d_out, d_in), so it receives Wᵀ.
"""
from __future__ import annotations

import numpy as np

from fastmlp.model import MLP

__all__ = ["to_onnx", "to_torch", "from_torch", "DEFAULT_OPSET", "MIN_OPSET"]

# Opset 13 is the oldest whose Softmax normalises along one axis (older ones flatten the
# trailing axes first — the same for our 2-D logits, but one rule is easier to state).
# The default, 17, is read by every onnxruntime since 1.15 (2023).
MIN_OPSET = 13
DEFAULT_OPSET = 17

_ONNX_ACTIVATION = {"relu": "Relu", "tanh": "Tanh", "logistic": "Sigmoid", "identity": None}


def _require(module: str, purpose: str, install: str):
    import importlib
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(f"{purpose} needs the {module} package: {install}") from exc


def _check_net(net) -> None:
    if not isinstance(net, MLP):
        raise TypeError(f"net: expected a fastmlp.MLP, got {type(net).__name__}")


def _snapshot(net: MLP) -> list[tuple[np.ndarray, np.ndarray]]:
    """Copies of (weights[l], biases[l]), taken under the training lock so that a fit
    running in another thread cannot hand over a half-updated network."""
    with net._lock:
        return [(W.copy(), b.copy()) for W, b in zip(net.weights, net.biases)]


# ---------------------------------------------------------------------------------- ONNX

def to_onnx(net: MLP, path, *, opset: int | None = None):
    """Write ``net`` as an ONNX model to ``path``; returns the ``onnx.ModelProto``.

    Graph: input ``"input"`` of shape (batch, d0) with a symbolic batch dimension, in the
    model's dtype (float32 → ONNX FLOAT, float64 → DOUBLE).  Each layer is one ``Gemm``
    (X·W + b, W stored as (d_in, d_out) like ``net.weights``) followed by the hidden
    activation (``Relu``, ``Tanh``, ``Sigmoid``; nothing for identity); the last layer
    by the output activation.  Outputs:

    - ``"output"`` (batch, dL): exactly what ``net.forward`` returns — outputs for mse
      (after ``output_activation``), logits for softmax_cross_entropy;
    - ``"probabilities"`` (batch, dL), only for softmax_cross_entropy: ``Softmax`` over
      the last axis, what ``net.predict_proba`` returns.

    onnxruntime's CPU provider runs every operator used here (Gemm, Relu, Tanh, Sigmoid,
    Softmax) in float32 and float64 (checked by tests/test_export.py).

    opset : int or None
        ONNX opset version, at least ``MIN_OPSET`` (13); None means ``DEFAULT_OPSET``
        (17).  The file's IR version is the oldest that carries this opset, so older
        runtimes can read it.
    """
    _check_net(net)
    onnx = _require("onnx", "fastmlp.export.to_onnx",
                    "pip install fastmlp[onnx] (or pip install onnx onnxruntime)")
    from onnx import TensorProto, helper, numpy_helper

    newest = onnx.defs.onnx_opset_version()
    if opset is None:
        opset = min(DEFAULT_OPSET, newest)
    if isinstance(opset, bool) or not isinstance(opset, (int, np.integer)):
        raise TypeError(f"opset: expected an int or None, got {opset!r}")
    if not MIN_OPSET <= opset <= newest:
        raise ValueError(f"opset: expected an int in [{MIN_OPSET}, {newest}] (the installed "
                         f"onnx's newest), got {opset}")
    opset = int(opset)
    elem = TensorProto.DOUBLE if net.dtype == np.float64 else TensorProto.FLOAT
    d0, dL = net.layer_sizes[0], net.layer_sizes[-1]

    nodes, inits = [], []
    x = "input"
    layers = _snapshot(net)
    for i, (W, b) in enumerate(layers, start=1):
        last = i == len(layers)
        act = _ONNX_ACTIVATION[net.output_activation if last else net.activation]
        inits.append(numpy_helper.from_array(W, name=f"W{i}"))
        inits.append(numpy_helper.from_array(b, name=f"b{i}"))
        z = "output" if last and act is None else f"Z{i}"
        nodes.append(helper.make_node("Gemm", [x, f"W{i}", f"b{i}"], [z], name=f"gemm{i}"))
        if act is not None:
            a = "output" if last else f"A{i}"
            nodes.append(helper.make_node(act, [z], [a], name=f"{act.lower()}{i}"))
            z = a
        x = z

    outputs = [helper.make_tensor_value_info("output", elem, ["batch", dL])]
    if net.loss_name == "softmax_cross_entropy":
        nodes.append(helper.make_node("Softmax", ["output"], ["probabilities"], axis=-1,
                                      name="softmax"))
        outputs.append(helper.make_tensor_value_info("probabilities", elem, ["batch", dL]))

    graph = helper.make_graph(
        nodes, "fastmlp_mlp",
        [helper.make_tensor_value_info("input", elem, ["batch", d0])], outputs,
        initializer=inits)
    opsets = [helper.make_opsetid("", opset)]
    from fastmlp import __version__
    model = helper.make_model(graph, opset_imports=opsets, producer_name="fastmlp",
                              producer_version=__version__,
                              ir_version=helper.find_min_ir_version_for(opsets))
    helper.set_model_props(model, {"loss": net.loss_name, "activation": net.activation,
                                   "output_activation": net.output_activation})
    onnx.checker.check_model(model)
    onnx.save_model(model, path)
    return model


# ------------------------------------------------------------------------------- PyTorch

_TORCH_INSTALL = "pip install torch (see fastmlp's README for the CPU-only build)"


def _torch_activations(nn):
    """fastmlp activation name → torch module class (identity: no module)."""
    return {"relu": nn.ReLU, "tanh": nn.Tanh, "logistic": nn.Sigmoid}


def to_torch(net: MLP):
    """An equivalent ``torch.nn.Sequential``: Linear, activation, …, Linear[, output act].

    Each ``Linear(d_in, d_out)`` holds ``weight = weights[l].T`` (d_out, d_in) and
    ``bias = biases[l]`` (d_out,), copied, in the model's dtype (float32 or float64).
    Hidden and output activations become ``ReLU``/``Tanh``/``Sigmoid`` modules; identity
    adds none.  For softmax_cross_entropy the result returns logits, like
    ``net.forward``; apply ``torch.softmax(·, dim=1)`` for probabilities.
    """
    _check_net(net)
    torch = _require("torch", "fastmlp.export.to_torch", _TORCH_INSTALL)
    nn = torch.nn
    acts = _torch_activations(nn)
    dtype = torch.float64 if net.dtype == np.float64 else torch.float32
    modules = []
    layers = _snapshot(net)
    for i, (W, b) in enumerate(layers, start=1):
        lin = nn.Linear(W.shape[0], W.shape[1], dtype=dtype)
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(W.T))
            lin.bias.copy_(torch.from_numpy(b))
        modules.append(lin)
        act = net.output_activation if i == len(layers) else net.activation
        if act != "identity":
            modules.append(acts[act]())
    return nn.Sequential(*modules)


def from_torch(seq, *, loss: str = "mse", **options) -> MLP:
    """An ``MLP`` with the layers and parameters of a ``torch.nn.Sequential``.

    ``seq`` must be ``Linear`` layers, each followed by at most one activation module
    (``ReLU``, ``Tanh``, ``Sigmoid`` or ``Identity``); two Linear layers in a row mean an
    identity activation between them.  Every hidden activation must be the same (fastmlp
    has one); the module after the last Linear, if any, is the output activation, which
    ``loss="softmax_cross_entropy"`` does not allow (that model's outputs are logits).
    The Linear layers' parameters must all be float32 or all float64; the MLP gets that
    dtype and ``weights[l] = linear.weight.T``, ``biases[l] = linear.bias`` (zeros for a
    Linear without bias), copied exactly.  A network without hidden layers gets
    ``activation="relu"`` (unused).

    ``options`` go to ``MLP`` (``optimizer``, ``l2``, ``momentum``, …); the layer sizes,
    activations, dtype and seed come from ``seq``.  Anything else in ``seq`` — Conv,
    Dropout, BatchNorm, Softmax, a nested Sequential, a subclass of Linear — is refused
    with a TypeError naming its position and class; a misplaced activation, different
    hidden activations or mismatched widths with a ValueError naming the module.
    """
    torch = _require("torch", "fastmlp.export.from_torch", _TORCH_INSTALL)
    nn = torch.nn
    if not isinstance(seq, nn.Sequential):
        raise TypeError(f"seq: expected a torch.nn.Sequential, got {type(seq).__name__}")
    fixed = {"layer_sizes", "activation", "output_activation", "dtype", "seed"} & set(options)
    if fixed:
        raise TypeError(f"from_torch: {', '.join(sorted(fixed))} come from seq and cannot "
                        "be passed")
    names = {cls: name for name, cls in _torch_activations(nn).items()}
    names[nn.Identity] = "identity"

    linears = []          # (position, module)
    acts = []             # activation name after each Linear
    act_where = []        # position and class of that activation module, or None
    for i, m in enumerate(seq):
        where = f"seq[{i}]"
        kind = type(m)  # exact types: a subclass may compute something else
        if kind is nn.Linear:
            linears.append((where, m))
            acts.append("identity")
            act_where.append(None)
        elif kind in names:
            if i == 0 or type(seq[i - 1]) is not nn.Linear:
                raise ValueError(f"{where}: {kind.__name__} does not follow a Linear layer; "
                                 "fastmlp applies one activation after each Linear")
            acts[-1] = names[kind]
            act_where[-1] = f"{where} ({kind.__name__})"
        else:
            hint = ""
            if kind in (nn.Softmax, nn.LogSoftmax):
                hint = ("; fastmlp's softmax_cross_entropy model outputs logits and "
                        "predict_proba applies the softmax, so drop it")
            raise TypeError(
                f"{where}: {kind.__name__} is not supported; from_torch takes Linear "
                f"layers and ReLU, Tanh, Sigmoid or Identity activations{hint}")
    if not linears:
        raise ValueError("seq: contains no Linear layer")

    hidden = set(acts[:-1])
    if len(hidden) > 1:
        found = ", ".join(f"{a} after {w}" for (w, _), a in zip(linears[:-1], acts[:-1]))
        raise ValueError(f"seq: fastmlp uses one hidden activation for every layer; "
                         f"found {found}")
    activation = hidden.pop() if hidden else "relu"
    output_activation = acts[-1]
    if loss == "softmax_cross_entropy" and output_activation != "identity":
        raise ValueError(f"{act_where[-1]}: an activation after the last Linear is an "
                         "output activation; loss='softmax_cross_entropy' works on logits, "
                         "so drop it")

    sizes = [linears[0][1].in_features]
    dtypes = set()
    for (where, lin), (prev_where, prev) in zip(linears[1:], linears[:-1]):
        if lin.in_features != prev.out_features:
            raise ValueError(f"{where}: in_features={lin.in_features} does not match "
                             f"{prev_where}'s out_features={prev.out_features}")
    for where, lin in linears:
        sizes.append(lin.out_features)
        for p in (lin.weight, lin.bias):
            if p is not None:
                if p.dtype not in (torch.float32, torch.float64):
                    raise TypeError(f"{where}: parameters of dtype {p.dtype}; fastmlp takes "
                                    "float32 or float64")
                dtypes.add(p.dtype)
    if len(dtypes) != 1:
        raise TypeError(f"seq: Linear parameters mix dtypes {sorted(map(str, dtypes))}; "
                        "convert with seq.float() or seq.double()")
    dtype = np.float64 if dtypes.pop() == torch.float64 else np.float32

    net = MLP(sizes, activation=activation, loss=loss, dtype=dtype, seed=0,
              output_activation=output_activation, **options)
    for (_, lin), W, b in zip(linears, net.weights, net.biases):
        W[...] = lin.weight.detach().cpu().numpy().T
        b[...] = 0 if lin.bias is None else lin.bias.detach().cpu().numpy()
    return net
