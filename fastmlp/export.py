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

from fastmlp import _core
from fastmlp.model import MLP

__all__ = ["to_onnx", "to_torch", "from_torch", "DEFAULT_OPSET", "MIN_OPSET"]

# Opset 13 is the oldest whose Softmax normalises along one axis (older ones flatten the
# trailing axes first — the same for our 2-D logits, but one rule is easier to state).
# The default, 17, is read by every onnxruntime since 1.15 (2023).
MIN_OPSET = 13
DEFAULT_OPSET = 17

# ONNX's own operator for an activation, with its attributes.  onnxruntime's CPU
# provider has no float64 kernel for LeakyRelu (opset ≥ 16), Elu, Softplus, Erf or Gelu,
# so a float64 model gets those (but GELU) composed of core operators (_composed).
_ONNX_ACTIVATION = {"relu": ("Relu", {}), "tanh": ("Tanh", {}), "logistic": ("Sigmoid", {}),
                    "leaky_relu": ("LeakyRelu", {"alpha": _core.LEAKY_RELU_NEGATIVE_SLOPE}),
                    "elu": ("Elu", {"alpha": float(_core.ELU_ALPHA_VALUE)}),
                    "softplus": ("Softplus", {})}
_GELU_OPSET = 20      # the first opset with a Gelu operator


def _onnx_activation(helper, act: str, z: str, a: str, i: int, opset: int,
                     dtype: np.dtype, inits: list) -> list:
    """Nodes computing ``a = act(z)`` for layer i (identity never comes here)."""
    from onnx import numpy_helper

    def const(name: str, value: float) -> str:
        inits.append(numpy_helper.from_array(np.array(value, dtype=dtype), name=f"{name}{i}"))
        return f"{name}{i}"

    def node(op: str, inputs: list[str], out: str | None = None, **attrs):
        return helper.make_node(op, inputs, [out or f"{op.lower()}{i}_{len(nodes)}"],
                                name=f"{act}_{op.lower()}{i}_{len(nodes)}", **attrs)

    nodes: list = []

    def add(op: str, inputs: list[str], out: str | None = None, **attrs) -> str:
        nodes.append(node(op, inputs, out, **attrs))
        return nodes[-1].output[0]

    composed = dtype == np.float64
    if act in _ONNX_ACTIVATION and not (composed and act in ("leaky_relu", "elu", "softplus")):
        op, attrs = _ONNX_ACTIVATION[act]
        add(op, [z], a, **attrs)
    elif act == "leaky_relu":       # z if z > 0 else s·z
        positive = add("Greater", [z, const("zero", 0.0)])
        add("Where", [positive, z, add("Mul", [z, const("slope", _core.LEAKY_RELU_NEGATIVE_SLOPE)])], a)
    elif act == "elu":              # z if z > 0 else α·(eᶻ − 1)
        positive = add("Greater", [z, const("zero", 0.0)])
        below = add("Mul", [add("Sub", [add("Exp", [z]), const("one", 1.0)]),
                            const("alpha", float(_core.ELU_ALPHA_VALUE))])
        add("Where", [positive, z, below], a)
    elif act == "softplus":         # max(z, 0) + log(1 + e^(−|z|)), as the core computes it
        tail = add("Log", [add("Add", [add("Exp", [add("Neg", [add("Abs", [z])])]),
                                       const("one", 1.0)])])
        add("Add", [add("Relu", [z]), tail], a)
    elif act == "silu":             # z·σ(z)
        add("Mul", [z, add("Sigmoid", [z])], a)
    elif act == "gelu" and opset >= _GELU_OPSET:
        add("Gelu", [z], a)
    elif act == "gelu":             # ½·z·(1 + erf(z/√2))
        cdf2 = add("Add", [add("Erf", [add("Div", [z, const("sqrt2_", np.sqrt(2.0))])]),
                           const("one", 1.0)])
        add("Mul", [add("Mul", [z, cdf2]), const("half", 0.5)], a)
    else:
        raise ValueError(f"activation: {act!r} has no ONNX export")
    return nodes


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
    activation (``Relu``, ``Tanh``, ``Sigmoid``, ``LeakyRelu``, ``Elu``, ``Softplus``;
    ``Gelu`` from opset 20, before it ½·z·(1 + Erf(z/√2)) in core operators; SiLU as
    z·Sigmoid(z); nothing for identity); the last layer by the output activation.
    Outputs:

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
    # (the compiled network's per-layer names: one name expanded, the output's last)
    for i, ((W, b), act) in enumerate(zip(layers, net._network.activations), start=1):
        last = i == len(layers)
        inits.append(numpy_helper.from_array(W, name=f"W{i}"))
        inits.append(numpy_helper.from_array(b, name=f"b{i}"))
        z = "output" if last and act == "identity" else f"Z{i}"
        nodes.append(helper.make_node("Gemm", [x, f"W{i}", f"b{i}"], [z], name=f"gemm{i}"))
        if act != "identity":
            a = "output" if last else f"A{i}"
            nodes += _onnx_activation(helper, act, z, a, i, opset, net.dtype, inits)
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
    from fastmlp._version import __version__
    model = helper.make_model(graph, opset_imports=opsets, producer_name="fastmlp",
                              producer_version=__version__,
                              ir_version=helper.find_min_ir_version_for(opsets))
    activation = net.activation if isinstance(net.activation, str) else ",".join(net.activation)
    helper.set_model_props(model, {"loss": net.loss_name, "activation": activation,
                                   "output_activation": net.output_activation})
    onnx.checker.check_model(model)
    onnx.save_model(model, path)
    return model


# ------------------------------------------------------------------------------- PyTorch

_TORCH_INSTALL = "pip install torch (see fastmlp's README for the CPU-only build)"


def _torch_activations(nn):
    """fastmlp activation name → (torch module class, the constructor arguments that give
    fastmlp's definition) (identity: no module)."""
    return {"relu": (nn.ReLU, {}), "tanh": (nn.Tanh, {}), "logistic": (nn.Sigmoid, {}),
            "leaky_relu": (nn.LeakyReLU, {"negative_slope": _core.LEAKY_RELU_NEGATIVE_SLOPE}),
            "elu": (nn.ELU, {"alpha": float(_core.ELU_ALPHA_VALUE)}),
            "gelu": (nn.GELU, {"approximate": "none"}), "silu": (nn.SiLU, {}),
            "softplus": (nn.Softplus, {"beta": 1.0, "threshold": 20.0})}


def _torch_settings(m) -> dict:
    """The constructor arguments of activation module m that fastmlp's definitions fix."""
    return {key: getattr(m, key) for key in ("negative_slope", "alpha", "approximate",
                                             "beta", "threshold") if hasattr(m, key)}


def to_torch(net: MLP):
    """An equivalent ``torch.nn.Sequential``: Linear, activation, …, Linear[, output act].

    Each ``Linear(d_in, d_out)`` holds ``weight = weights[l].T`` (d_out, d_in) and
    ``bias = biases[l]`` (d_out,), copied, in the model's dtype (float32 or float64).
    Hidden and output activations become the matching modules (``ReLU``, ``Tanh``,
    ``Sigmoid``, ``LeakyReLU``, ``ELU``, ``GELU``, ``SiLU``, ``Softplus``); identity adds
    none; a hidden layer with dropout gets a ``Dropout(p)`` module after its activation
    (inactive in ``eval()`` mode, as in fastmlp's prediction).  For softmax_cross_entropy
    the result returns logits, like
    ``net.forward``; apply ``torch.softmax(·, dim=1)`` for probabilities.
    """
    _check_net(net)
    torch = _require("torch", "fastmlp.export.to_torch", _TORCH_INSTALL)
    nn = torch.nn
    acts = _torch_activations(nn)
    dtype = torch.float64 if net.dtype == np.float64 else torch.float32
    modules = []
    layers = _snapshot(net)
    rates = net._engine.dropout          # one per hidden layer
    for l, ((W, b), act) in enumerate(zip(layers, net._network.activations)):
        lin = nn.Linear(W.shape[0], W.shape[1], dtype=dtype)
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(W.T))
            lin.bias.copy_(torch.from_numpy(b))
        modules.append(lin)
        if act != "identity":
            cls, kwargs = acts[act]
            modules.append(cls(**kwargs))
        if l < len(rates) and rates[l] > 0:
            modules.append(nn.Dropout(rates[l]))
    return nn.Sequential(*modules)


def from_torch(seq, *, loss: str = "mse", **options) -> MLP:
    """An ``MLP`` with the layers and parameters of a ``torch.nn.Sequential``.

    ``seq`` must be ``Linear`` layers, each followed by at most one activation module
    (``ReLU``, ``Tanh``, ``Sigmoid``, ``LeakyReLU`` (slope 0.01), ``ELU`` (α = 1),
    ``GELU`` (exact), ``SiLU``, ``Softplus`` (PyTorch's defaults) or ``Identity``); two
    Linear layers in a row mean an identity activation between them; a ``Dropout(p)``
    after a hidden layer becomes its ``dropout``.  Different hidden activations (or
    dropout rates) become a per-layer sequence; the module after the last
    Linear, if any, is the output activation, which ``loss="softmax_cross_entropy"``
    does not allow (that model's outputs are logits).
    The Linear layers' parameters must all be float32 or all float64; the MLP gets that
    dtype and ``weights[l] = linear.weight.T``, ``biases[l] = linear.bias`` (zeros for a
    Linear without bias), copied exactly.  A network without hidden layers gets
    ``activation="relu"`` (unused).

    ``options`` go to ``MLP`` (``optimizer``, ``l2``, ``momentum``, …); the layer sizes,
    activations, dropout, dtype and seed come from ``seq``.  Anything else in ``seq`` —
    Conv, BatchNorm, Softmax, a nested Sequential, a subclass of Linear — is refused with a
    TypeError naming its position and class; a misplaced activation or Dropout, an
    activation module with other settings than fastmlp's or mismatched widths with a
    ValueError naming the module.
    """
    torch = _require("torch", "fastmlp.export.from_torch", _TORCH_INSTALL)
    nn = torch.nn
    if not isinstance(seq, nn.Sequential):
        raise TypeError(f"seq: expected a torch.nn.Sequential, got {type(seq).__name__}")
    fixed = ({"layer_sizes", "activation", "output_activation", "dtype", "seed", "dropout"}
             & set(options))
    if fixed:
        raise TypeError(f"from_torch: {', '.join(sorted(fixed))} come from seq and cannot "
                        "be passed")
    known = {cls: (name, kwargs) for name, (cls, kwargs) in _torch_activations(nn).items()}
    names = {cls: name for cls, (name, _) in known.items()}
    names[nn.Identity] = "identity"

    linears = []          # (position, module)
    acts = []             # activation name after each Linear
    act_where = []        # position and class of that activation module, or None
    rates = []            # dropout probability after each Linear
    for i, m in enumerate(seq):
        where = f"seq[{i}]"
        kind = type(m)  # exact types: a subclass may compute something else
        if kind is nn.Linear:
            linears.append((where, m))
            acts.append("identity")
            act_where.append(None)
            rates.append(0.0)
        elif kind is nn.Dropout:
            if not linears or rates[-1] or type(seq[i + 1] if i + 1 < len(seq) else None) \
                    is not nn.Linear:
                raise ValueError(f"{where}: Dropout must follow a hidden layer (its Linear "
                                 "and activation) and precede the next Linear")
            rates[-1] = float(m.p)
        elif kind in names:
            if i == 0 or type(seq[i - 1]) is not nn.Linear:
                raise ValueError(f"{where}: {kind.__name__} does not follow a Linear layer; "
                                 "fastmlp applies one activation after each Linear")
            want = known[kind][1] if kind in known else {}
            if any(_torch_settings(m).get(k) != v for k, v in want.items()):
                raise ValueError(f"{where}: {kind.__name__} with {_torch_settings(m)}; "
                                 f"fastmlp's {names[kind]} is {want}")
            acts[-1] = names[kind]
            act_where[-1] = f"{where} ({kind.__name__})"
        else:
            hint = ""
            if kind in (nn.Softmax, nn.LogSoftmax):
                hint = ("; fastmlp's softmax_cross_entropy model outputs logits and "
                        "predict_proba applies the softmax, so drop it")
            raise TypeError(
                f"{where}: {kind.__name__} is not supported; from_torch takes Linear "
                f"layers and {', '.join(c.__name__ for c in names)} activations{hint}")
    if not linears:
        raise ValueError("seq: contains no Linear layer")

    hidden = acts[:-1]
    activation = (hidden[0] if len(set(hidden)) == 1 else hidden) if hidden else "relu"
    dropout = rates[:-1]
    dropout = (dropout[0] if len(set(dropout)) == 1 else dropout) if dropout else 0.0
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
              output_activation=output_activation, dropout=dropout, **options)
    for (_, lin), W, b in zip(linears, net.weights, net.biases):
        W[...] = lin.weight.detach().cpu().numpy().T
        b[...] = 0 if lin.bias is None else lin.bias.detach().cpu().numpy()
    return net
