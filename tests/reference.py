"""Plain-numpy reference for the math of /work/shared/seeds/, written from the seed texts.

Independent of fastmlp on purpose (it must not import it): the tests compare the compiled
kernels against these transcriptions.  Everything is computed in float64 whatever the
input dtype, so a float32 kernel is compared against the exact-as-possible value of the
same float32 inputs.

Layout is row-major, as in seed 003: a batch is (n, d); W(l) is (d(l-1), d(l)); the
pre-activation of layer l is S(l) = X(l-1)·W(l) + 1·b(l)ᵀ.  Seed 001 writes the same
network column-major (W1 is (m1, m0), X is (m0, n)); its formulas are the transposes of
the ones here.
"""
from __future__ import annotations

import numpy as np

__all__ = ["linear_forward", "relu", "relu_backward", "backprop_delta", "linear_backward",
           "mse_loss_delta", "softmax", "log_softmax", "softmax_xent_loss_delta",
           "forward", "loss_and_grad",
           "identity", "logistic", "tanh", "activation", "activation_derivative",
           "activation_backward", "sklearn_loss", "momentum_update", "adam_update",
           "adam_update_bias_corrected"]


def _f64(a) -> np.ndarray:
    return np.asarray(a, dtype=np.float64)


def linear_forward(A, W, b) -> np.ndarray:
    """Z = A·W + 1·bᵀ.

    Seed 003 eq. (20)/(25): s_j(l) = b_j(l) + Σᵢ x_i(l-1)·w_ij(l), stacked over the N rows
    of X(l-1); seed 001: W1·X + b1·1ₙᵀ (transposed).  A (n, d_in), W (d_in, d_out),
    b (d_out,) → Z (n, d_out).
    """
    A, W, b = _f64(A), _f64(W), _f64(b)
    n, d_in = A.shape
    d_out = W.shape[1]
    Z = np.empty((n, d_out))
    # Written as the explicit sum over i of seed 003 eq. (20), not as A @ W.
    for j in range(d_out):
        Z[:, j] = b[j] + (A * W[:, j]).sum(axis=1)
    return Z


def relu(Z) -> np.ndarray:
    """θ(s) = max(s, 0) element-wise (seed 001: σ(x) = max(x, 0); seed 003 ReLU).

    NaN is kept as NaN (max(NaN, 0) is undefined; the library must not hide it).
    """
    Z = _f64(Z)
    return np.where(Z < 0, 0.0, Z)


def relu_backward(A, dA) -> np.ndarray:
    """Δ = dA ⊙ θ'(S) with θ'(s) = [s > 0] (seed 003 eq. 23: 0 for s ≤ 0, 1 for s > 0).

    For A = θ(S), [S > 0] = [A > 0], so the mask is read from the activations A.  Seed 002
    item 2: ∇ₐ = g'(a)ᵀ ⊙ ∇ₕ; seed 001: V ⊙ D.
    """
    A, dA = _f64(A), _f64(dA)
    return np.where(A > 0, dA, 0.0)


def backprop_delta(D_next, W_next, A) -> np.ndarray:
    """Δ(l) = θ'(S(l)) ⊙ (Δ(l+1)·W(l+1)ᵀ)  (seed 003 eq. 30/34/42).

    Element-wise, eq. (30): δ_j(l) = θ'(s_j(l))·Σₖ δ_k(l+1)·w_jk(l+1).  D_next (n, d_next),
    W_next (d, d_next), A = θ(S(l)) (n, d) → Δ(l) (n, d).
    """
    D_next, W_next, A = _f64(D_next), _f64(W_next), _f64(A)
    n, d = A.shape
    back = np.empty((n, d))
    for j in range(d):
        back[:, j] = (D_next * W_next[j, :]).sum(axis=1)
    return relu_backward(A, back)


def linear_backward(A_prev, D):
    """dW(l) = X(l-1)ᵀ·Δ(l) and db(l) = 1ᵀ·Δ(l)  (seed 003 eq. 33 and 41).

    The 1/N of the seed is carried inside Δ (the output deltas below already hold it), so
    no scaling here.  Element-wise, eq. (29): ∂E/∂w_ij = Σ_rows x_i·δ_j.
    A_prev (n, d_in), D (n, d_out) → (dW (d_in, d_out), db (d_out,)).
    """
    A_prev, D = _f64(A_prev), _f64(D)
    d_in, d_out = A_prev.shape[1], D.shape[1]
    dW = np.empty((d_in, d_out))
    for i in range(d_in):
        dW[i, :] = (A_prev[:, i:i + 1] * D).sum(axis=0)
    db = D.sum(axis=0)
    return dW, db


def _row_weights(sample_weight, n: int) -> np.ndarray:
    # (n, 1) weights wᵢ of the rows' terms in a mean (all 1 when None).
    return np.ones((n, 1)) if sample_weight is None else _f64(sample_weight).reshape(n, 1)


def mse_loss_delta(Yhat, Y, sample_weight=None):
    """L = (1/n)·Σᵢ wᵢ·‖ŷᵢ − yᵢ‖² and D = ∂L/∂Ŷ = (2/n)·wᵢ·(ŷᵢ − yᵢ).

    Seed 001 §1 (loss summed over outputs, averaged over samples) and §3 (R = f(X) − Y,
    gradients carry 2/n); seed 000 eq. (2), (8): ∂l/∂ŷ = 2(ŷ − y), averaged over m in (12).
    A sample weight wᵢ (all 1 when None) multiplies row i's term of the mean, and so
    its row of D.  Returns (loss as a Python float, D (n, k)).
    """
    Yhat, Y = _f64(Yhat), _f64(Y)
    n = Yhat.shape[0]
    w = _row_weights(sample_weight, n)
    R = Yhat - Y
    return float((w * R * R).sum() / n), (2.0 / n) * w * R


def log_softmax(Z) -> np.ndarray:
    """log pₖ = sₖ − log Σⱼ exp(sⱼ)  (seed 003 eq. 3), with the log-sum-exp taken around
    the row maximum so that it is finite for logits of any size."""
    Z = _f64(Z)
    m = Z.max(axis=1, keepdims=True)
    return Z - (m + np.log(np.exp(Z - m).sum(axis=1, keepdims=True)))


def softmax(Z) -> np.ndarray:
    """pₖ = exp(sₖ) / Σⱼ exp(sⱼ) row-wise (seed 003 eq. 3), shifted by the row maximum."""
    Z = _f64(Z)
    E = np.exp(Z - Z.max(axis=1, keepdims=True))
    return E / E.sum(axis=1, keepdims=True)


def _dense_targets(Y, n: int, k: int) -> np.ndarray:
    Y = np.asarray(Y)
    if Y.ndim == 1:
        if Y.dtype.kind not in "iu":
            raise TypeError("reference: 1-D targets must be integer labels")
        if Y.size and (Y.min() < 0 or Y.max() >= k):
            raise ValueError("reference: label out of range")
        T = np.zeros((n, k))
        T[np.arange(n), Y.astype(np.int64)] = 1.0
        return T
    return _f64(Y)


def softmax_xent_loss_delta(logits, Y, sample_weight=None):
    """L = −(1/n)·Σᵢ wᵢ·Σₖ yᵢₖ·log pᵢₖ with p = softmax(logits), and D = ∂L/∂logits.

    Seed 003 eq. (3): e = −Σₖ yₖ log pₖ = −Σₖ yₖ sₖ + (Σₖ yₖ)·log Σⱼ exp(sⱼ); its derivative
    (before the seed uses Σₖ yₖ = 1) is ∂e/∂sⱼ = −yⱼ + (Σₖ yₖ)·pⱼ, which is eq. (4)
    δ = p − y for probability rows.  Averaged over the n rows (the 1/N of eq. 9):
    D = (P·rowsum(Y) − Y)/n.  A sample weight wᵢ (all 1 when None) multiplies row i's
    term of the mean, and so its row of D.

    Y: (n,) integer labels (one-hot rows) or (n, k) rows of weights/probabilities.
    Returns (loss as a Python float, D (n, k)).
    """
    Z = _f64(logits)
    n, k = Z.shape
    T = _dense_targets(Y, n, k)
    logP = log_softmax(Z)
    # 0·log p is taken as 0 even where p underflows (log p = −huge is still finite here,
    # since log_softmax never takes the log of an underflowed exp).
    w = _row_weights(sample_weight, n)
    loss = float(-(w * T * logP).sum() / n)
    P = np.exp(logP)
    D = w * (P * T.sum(axis=1, keepdims=True) - T) / n
    return loss, D


def forward(weights, biases, X) -> np.ndarray:
    """f(X): ReLU hidden layers, identity output (seed 001 §1, seed 003 §1).

    X(0) = X; X(l) = θ(X(l-1)·W(l) + 1·b(l)ᵀ) for l < L; output S(L) = X(L-1)·W(L) + 1·b(L)ᵀ
    (raw outputs for MSE, logits for softmax cross-entropy).
    """
    A = _f64(X)
    L = len(weights)
    for l, (W, b) in enumerate(zip(weights, biases)):
        Z = linear_forward(A, W, b)
        A = relu(Z) if l < L - 1 else Z
    return A


def loss_and_grad(weights, biases, X, Y, loss: str, sample_weight=None):
    """Loss and all gradients by back-propagation (seed 003 eq. 29–42; seed 001 §3).

    loss: "mse" (Y (n, k), or (n,) when k == 1) or "softmax_cross_entropy" (Y integer
    labels (n,) or probability rows (n, k)).
    Output delta Δ(L) = ∂L/∂S(L) from ``mse_loss_delta`` / ``softmax_xent_loss_delta``;
    then for l = L…1: dW(l) = X(l-1)ᵀ·Δ(l), db(l) = 1ᵀ·Δ(l) (eq. 33, 41) and
    Δ(l-1) = θ'(S(l-1)) ⊙ (Δ(l)·W(l)ᵀ) (eq. 34).  sample_weight: (n,) or None, as the
    loss deltas take it.
    Returns (loss as float, [(dW(1), db(1)), …, (dW(L), db(L))]).
    """
    L = len(weights)
    acts = [_f64(X)]
    for l, (W, b) in enumerate(zip(weights, biases)):
        Z = linear_forward(acts[-1], W, b)
        acts.append(relu(Z) if l < L - 1 else Z)
    out = acts[-1]
    if loss == "mse":
        Yd = _f64(Y)
        if Yd.ndim == 1:
            Yd = Yd.reshape(-1, 1)
        value, D = mse_loss_delta(out, Yd, sample_weight)
    elif loss == "softmax_cross_entropy":
        value, D = softmax_xent_loss_delta(out, Y, sample_weight)
    else:
        raise ValueError(f"reference: unknown loss {loss!r}")
    grads = [None] * L
    for l in range(L - 1, -1, -1):
        grads[l] = linear_backward(acts[l], D)
        if l > 0:
            D = backprop_delta(D, weights[l], acts[l])
    return value, grads


# --------------------------------------------------------------------------------------
# Further activations, scikit-learn's losses and the optimizers of the estimators.  These
# are not in the seeds; each function names the definition it transcribes.
# --------------------------------------------------------------------------------------
def identity(Z) -> np.ndarray:
    """g(z) = z."""
    return _f64(Z).copy()


def logistic(Z) -> np.ndarray:
    """σ(z) = 1/(1 + e^−z), evaluated as e^z/(1 + e^z) for z < 0 so that neither branch
    overflows and small values keep their relative accuracy."""
    Z = _f64(Z)
    with np.errstate(over="ignore"):
        e = np.exp(-np.abs(Z))          # in (0, 1]: never overflows
    return np.where(Z >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def tanh(Z) -> np.ndarray:
    """g(z) = tanh z = (e^z − e^−z)/(e^z + e^−z)."""
    return np.tanh(_f64(Z))


def activation(kind: str, Z) -> np.ndarray:
    """g(Z) for an activation by name; "softmax" is row-wise, "exp" is e^z."""
    if kind == "softmax":
        return softmax(Z)
    if kind == "exp":
        return np.exp(_f64(Z))
    return {"identity": identity, "relu": relu, "logistic": logistic, "tanh": tanh}[kind](Z)


def activation_derivative(kind: str, A) -> np.ndarray:
    """g'(z) written through the output a = g(z), so the backward pass needs no Z:
    identity 1; relu [a > 0] (seed 003 eq. 23); logistic σ' = σ·(1 − σ) = a·(1 − a);
    tanh' = 1 − tanh² = 1 − a²."""
    A = _f64(A)
    if kind == "identity":
        return np.ones_like(A)
    if kind == "relu":
        return (A > 0).astype(np.float64)
    if kind == "logistic":
        return A * (1.0 - A)
    if kind == "tanh":
        return 1.0 - A * A
    raise ValueError(f"reference: no derivative for {kind!r}")


def activation_backward(kind: str, A, D) -> np.ndarray:
    """Δ = D ⊙ g'(z) (seed 002: ∇a = g'(a) ⊙ ∇ŷ), g' read from A = g(Z)."""
    return _f64(D) * activation_derivative(kind, A)


def _xlogy(x, y) -> np.ndarray:
    """x·log y with 0·log y = 0 (whatever y is), as scipy.special.xlogy."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(x == 0, 0.0, x * np.log(y))


def sklearn_loss(kind: str, P, Y, sample_weight=None, eps: float = float(np.finfo(np.float64).eps)):
    """scikit-learn's MLP losses (sklearn/neural_network/_base.py, LOSS_FUNCTIONS) and the
    raw output delta its backpropagation starts from.

    Each loss is a weighted average over the samples, wᵢ/Σw, of a per-sample term, with P
    clipped to [eps, 1 − eps] inside the logarithms (eps of the data's dtype, passed in):
    squared_error ½·mean over outputs of the average of (y − p)²; log_loss −Σⱼ y·log p
    (scikit-learn's function adds a 1 − p column when k = 1, a case its MLPs never reach:
    they use binary_log_loss there);
    binary_log_loss −Σⱼ [y·log p + (1 − y)·log(1 − p)]; poisson Σⱼ (y·log(y/p) − y + p).
    Each pairs with its canonical link (identity, softmax, logistic, exp), for which
    ∂(per-sample term)/∂z = p − y; scikit-learn starts backpropagation from (P − Y) scaled
    by the sample weights and divides the gradients by Σw afterwards.
    Returns (loss as float, delta (n, k)).
    """
    P, Y = _f64(P), _f64(Y)
    n, k = P.shape
    w = np.ones(n) if sample_weight is None else _f64(sample_weight)
    clipped = np.clip(P, eps, 1 - eps)
    if kind == "squared_error":
        per_output = 0.5 * (Y - P) ** 2           # averaged over outputs below
        term = per_output.mean(axis=1)
    elif kind == "log_loss":
        term = -_xlogy(Y, clipped).sum(axis=1)
    elif kind == "binary_log_loss":
        term = -(_xlogy(Y, clipped) + _xlogy(1 - Y, 1 - clipped)).sum(axis=1)
    elif kind == "poisson":
        with np.errstate(divide="ignore"):
            term = (_xlogy(Y, Y / P) - Y + P).sum(axis=1)
    else:
        raise ValueError(f"reference: unknown scikit-learn loss {kind!r}")
    loss = float((w * term).sum() / w.sum())
    return loss, (P - Y) * w[:, None]


def momentum_update(theta, grad, velocity, lr: float, momentum: float, nesterov: bool):
    """Heavy-ball momentum (Polyak): v ← μ·v − η·g, θ ← θ + v.  With Nesterov's
    correction in the form of Sutskever et al. (2013) and Bengio et al. (2012), written
    here from the old velocity: θ ← θ + μ²·v_old − (1 + μ)·η·g (equal to θ + μ·v_new − η·g).
    Returns (θ, v) new, float64.
    """
    theta, g, v_old = _f64(theta), _f64(grad), _f64(velocity)
    v = momentum * v_old - lr * g
    if nesterov:
        return theta + momentum * momentum * v_old - (1 + momentum) * lr * g, v
    return theta + v, v


def adam_update(theta, grad, m, v, lr: float, beta_1: float, beta_2: float,
                epsilon: float, t: int):
    """Step t of Adam in the form of Kingma & Ba (2015) §2, last paragraph, which folds the
    bias corrections into the step size:

        m ← β1·m + (1 − β1)·g;   v ← β2·v + (1 − β2)·g²
        η_t = η·√(1 − β2ᵗ)/(1 − β1ᵗ);   θ ← θ − η_t·m/(√v + ε)

    (ε outside the square root, added to the uncorrected √v — the form fastmlp and
    scikit-learn use; ``adam_update_bias_corrected`` is Algorithm 1 itself).
    Returns (θ, m, v) new, float64.
    """
    theta, g, m, v = _f64(theta), _f64(grad), _f64(m), _f64(v)
    m = beta_1 * m + (1 - beta_1) * g
    v = beta_2 * v + (1 - beta_2) * g * g
    lr_t = lr * np.sqrt(1 - beta_2 ** t) / (1 - beta_1 ** t)
    return theta - lr_t * m / (np.sqrt(v) + epsilon), m, v


def adam_update_bias_corrected(theta, grad, m, v, lr: float, beta_1: float, beta_2: float,
                               epsilon_hat: float, t: int):
    """Kingma & Ba (2015) Algorithm 1: m̂ = m/(1 − β1ᵗ), v̂ = v/(1 − β2ᵗ),
    θ ← θ − η·m̂/(√v̂ + ε̂).  Equal to ``adam_update`` with ε = ε̂·√(1 − β2ᵗ).
    Returns (θ, m, v) new, float64.
    """
    theta, g, m, v = _f64(theta), _f64(grad), _f64(m), _f64(v)
    m = beta_1 * m + (1 - beta_1) * g
    v = beta_2 * v + (1 - beta_2) * g * g
    m_hat = m / (1 - beta_1 ** t)
    v_hat = v / (1 - beta_2 ** t)
    return theta - lr * m_hat / (np.sqrt(v_hat) + epsilon_hat), m, v
