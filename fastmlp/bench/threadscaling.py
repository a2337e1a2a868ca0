"""Where the time of a training step goes at 1 and 2 threads, and what that predicts for
machines with many more cores.

    python -m fastmlp.bench.threadscaling [--quick] [--dtype D] [--optimizer O ...]
                                          [--json PATH]
    fastmlp bench --threads-scaling [the same options]

One mnist-like step (``MLP.train_step``, [784, 256, 128, 10], 128 rows, softmax
cross-entropy; plain SGD and Adam by default) is timed whole, next to its matrix
products alone (the ``gemms`` peer of peers.py: numpy matmul into preallocated arrays,
the library fastmlp sends its large products to by default) and to each of its
element-wise passes run by itself: bias, ReLU and its mask, softmax cross-entropy, the
optimizer's finite pre-check and update; to the same step with every pass on the
calling thread ("step, passes whole": no pass split over fastmlp's worker pool,
_split.pxi), the passes' split's own A/B; and to the step with its large products sent
to numpy's thread pool instead of split over fastmlp's workers ("step, products to
pool": fastmlp.threads.set_split_products(False), _split_gemm.h), whose workers then
spin and keep the passes whole.  All at 1 and at 2 threads (threadpoolctl, which also
sets fastmlp's own limit), interleaved, medians, with a pause before each block so that
no BLAS pool still spins from the block before (the products alone run in numpy's pool).

From those: the products' parallel fraction q (Amdahl, from their 1- and 2-thread times),
the step's serial part (step − products, which runs on one core whatever the thread
count), the part of it the listed passes do not name (step − products − their sum, at 2
threads: the bias-gradient sums, the loss's pass over the targets, the call's own
overhead), and the projected step and products times at 8, 16 and 64 cores.  The passes
are timed through the core's entries behind ``fastmlp.kernels`` (without its argument
checks, which the step does not pay): the update kernels and their finite checks split
over fastmlp's workers as the step's do, the bias, ReLU and softmax ones run whole on the
calling thread, where the step may split a large activation pass.  "serial" counts every
split pass as serial, so the projection is pessimistic:

    products(N) = products(1)·((1 − q) + q/N),   step(N) = serial + products(N).

The projection assumes the products keep scaling as they do from 1 to 2 threads, which a
BLAS does at these sizes only approximately; it is the argument for (or against) making
the element-wise passes parallel, not a measurement of a big machine.
"""
from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from fastmlp.bench import harness
from fastmlp.bench import peers as P

LAYERS = [784, 256, 128, 10]
ROWS = 128
LOSS = "softmax_cross_entropy"
CORES = (8, 16, 64)
# The rows of the breakdown that are whole steps or their products, not passes of a step.
NOT_PASSES = ("step", "step, passes whole", "step, products to pool", "products")
SETTINGS = {"full": dict(rounds=15, block_s=0.05, warmup_s=0.2, pause_s=0.15),
            "quick": dict(rounds=3, block_s=0.005, warmup_s=0.02, pause_s=0.0)}


def passes(dtype, optimizer: str) -> dict:
    """{name: callable} of the step, its products, and its element-wise passes."""
    import fastmlp
    from fastmlp import _core
    X, Y = harness.make_data(ROWS, LAYERS, LOSS, dtype)
    model, whole, pooled = (fastmlp.MLP(LAYERS, loss=LOSS, dtype=dtype, seed=0,
                                        optimizer=optimizer) for _ in range(3))

    def as_shipped(grain_scale: float, split_products: bool, net):
        def step():
            _core._set_split_scale(grain_scale)
            _core._set_split_products(split_products)
            net.train_step(X, Y, 1e-4)
        return step

    # The step as shipped (passes and products split over fastmlp's pool), with every
    # pass on the calling thread (grain scale 1e12: no pass splits), and with the
    # products sent to numpy's pool.
    fns = {"step": as_shipped(1.0, True, model),
           "step, passes whole": as_shipped(1e12, True, whole),
           "step, products to pool": as_shipped(1.0, False, pooled)}
    gemms = P.GemmsPeer()
    gemms.setup(LAYERS, LOSS, dtype, X, Y)
    fns["products"] = gemms.step
    rng = np.random.default_rng(0)
    hidden = [rng.standard_normal((ROWS, d)).astype(dtype) for d in LAYERS[1:-1]]
    biases = [np.zeros(d, dtype) for d in LAYERS[1:]]
    logits = rng.standard_normal((ROWS, LAYERS[-1])).astype(dtype)
    out_k = np.empty_like(logits)
    outs = [np.empty_like(h) for h in hidden]

    # The passes through the core's own entry points (fastmlp._core.k_*), which check
    # only shapes: fastmlp.kernels' argument checks cost 5-25 µs a call in Python, which
    # the step, checking its inputs once, never pays.
    def bias_and_relu():
        for Z, b, A in zip(hidden, biases, outs):
            np.add(Z, b, out=A)          # numpy: fastmlp's bias add is inside its kernel
            _core.k_relu_forward(A)

    def relu_masks():
        for A, D in zip(outs, hidden):
            _core.k_relu_mask_delta(A, D)

    fns["bias + relu"] = bias_and_relu
    fns["relu masks"] = relu_masks
    fns["softmax xent"] = lambda: _core.k_softmax_xent_labels(logits, Y, out_k)
    n_params = sum(a * b + b for a, b in zip(LAYERS[:-1], LAYERS[1:]))
    theta, grad = (rng.standard_normal(n_params).astype(dtype) for _ in range(2))
    state = [np.zeros(n_params, dtype) for _ in range(2)]
    # Adam and momentum check every new value before their update (the NaN guard); the
    # fused SGD step bounds them instead, from passes of max |x| the update row stands for.
    if optimizer == "adam":
        adam = (theta, grad, state[0], state[1], 1e-9, 0.9, 0.999, 1e-8, 1)
        fns["pre-check (adam)"] = lambda: _core.k_adam_update(*adam, check=True)
        fns["update (adam)"] = lambda: _core.k_adam_update(*adam)
    elif optimizer == "momentum":
        momentum = (theta, grad, state[0], 1e-9, 0.9, False)
        fns["pre-check (momentum)"] = lambda: _core.k_momentum_update(*momentum, check=True)
        fns["update (momentum)"] = lambda: _core.k_momentum_update(*momentum)
    else:
        fns["update (sgd)"] = lambda: _core.k_sgd_update(theta, grad, 1e-9)
    return fns


def run(dtype="float32", optimizer="sgd", quick=False) -> dict:
    from threadpoolctl import threadpool_limits
    settings = SETTINGS["quick" if quick else "full"]
    dt = np.dtype(dtype)
    times = {}
    from fastmlp import _core
    split_products = _core._get_split_products()
    for threads in (1, 2):
        try:
            with threadpool_limits(limits=threads):
                res = harness.measure(passes(dt, optimizer), **settings)
        finally:
            _core._set_split_scale(1.0)
            _core._set_split_products(split_products)
        times[threads] = {k: harness.summarize(v["samples_us"])["median_us"]
                          for k, v in res.items()}
    t1, t2 = times[1], times[2]
    speedup = t1["products"] / t2["products"]
    q = min(1.0, max(0.0, 2.0 * (1.0 - 1.0 / speedup)))       # Amdahl, from N = 1 → 2
    outside_products = t2["step"] - t2["products"]
    serial = max(0.0, outside_products)
    named = sum(t for name, t in t2.items() if name not in NOT_PASSES)
    unnamed = outside_products - named          # unclipped: noise shows as a negative part
    projection = {}
    for n in CORES:
        products = t1["products"] * ((1 - q) + q / n)
        projection[n] = {"products_us": products, "step_us": serial + products,
                         "step_over_products": (serial + products) / products}
    return {"dtype": dt.name, "optimizer": optimizer, "layers": LAYERS, "rows": ROWS,
            "times_us": times, "products_parallel_fraction": q,
            "serial_us": serial, "serial_fraction_at_2": serial / t2["step"],
            "named_passes_us": named, "unnamed_us": unnamed,
            "unnamed_fraction_of_step": unnamed / t2["step"],
            "step_over_products": {th: times[th]["step"] / times[th]["products"]
                                   for th in (1, 2)},
            "projection": projection}


def table(r: dict) -> str:
    t = r["times_us"]
    lines = [f"mnist-like step {r['layers']}, {r['rows']} rows, {r['dtype']}, "
             f"{r['optimizer']}: time per call (µs, medians)",
             f"{'pass':<24}{'1 thread':>10}{'2 threads':>11}{'speed-up':>10}"]
    for name in t[1]:
        lines.append(f"{name:<24}{t[1][name]:>10.1f}{t[2][name]:>11.1f}"
                     f"{t[1][name] / t[2][name]:>10.2f}")
    lines += [f"step / products: {r['step_over_products'][1]:.3f} at 1 thread, "
              f"{r['step_over_products'][2]:.3f} at 2",
              f"products' parallel fraction q = {r['products_parallel_fraction']:.3f}; the "
              f"step's serial part {r['serial_us']:.1f} µs "
              f"({100 * r['serial_fraction_at_2']:.1f} % of the step at 2 threads), of "
              f"which the passes above name {r['named_passes_us']:.1f} µs; unnamed "
              f"{r['unnamed_us']:.1f} µs ({100 * r['unnamed_fraction_of_step']:.1f} % of "
              f"the step)",
              f"{'cores':<8}{'products µs':>12}{'step µs':>10}{'step/products':>15}"]
    for n, p in r["projection"].items():
        lines.append(f"{n:<8}{p['products_us']:>12.1f}{p['step_us']:>10.1f}"
                     f"{p['step_over_products']:>15.2f}")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="fastmlp bench --threads-scaling",
                                 description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="a few seconds, for a smoke test")
    ap.add_argument("--dtype", choices=("float32", "float64", "both"), default="both")
    ap.add_argument("--optimizer", nargs="+", choices=("sgd", "momentum", "adam"),
                    default=["sgd", "adam"],
                    help="the step's optimizer(s); plain SGD (the default of MLP and of "
                         "`fastmlp bench`) fuses its update into the products, Adam has "
                         "the largest element-wise pass")
    ap.add_argument("--json", metavar="PATH", help="write every number and the environment")
    args = ap.parse_args(argv)
    try:
        import threadpoolctl  # noqa: F401
    except ImportError:
        print("fastmlp bench --threads-scaling needs threadpoolctl: "
              "pip install fastmlp[bench]", file=sys.stderr)
        return 2
    dtypes = ("float32", "float64") if args.dtype == "both" else (args.dtype,)
    results = [run(d, o, args.quick) for o in args.optimizer for d in dtypes]
    env = harness.environment(threads=2)
    print(harness.env_summary(env))
    for r in results:
        print()
        print(table(r))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"environment": env, "results": results}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
