"""Instruction counts of training steps and epochs, by callgrind: repeatable where timings
are not, so two builds can be compared to the instruction.

    valgrind --tool=callgrind --collect-atstart=no --toggle-collect='TOGGLE' \\
        python tools/callgrind_step.py WORKLOAD [REPEATS]

WORKLOAD (mse, float64, plain SGD, [16, 32, 1]):
  online        REPEATS train_steps on 1 row (default 2,000)
  tiny          REPEATS train_steps on 32 rows
  epoch         REPEATS shuffled epochs of 4,096 rows in batches of 32 (default 20)
  epoch-sparse  the same on a CSR X (80 % zeros)

TOGGLE is a C function pattern of the compiled core:
  '*_core_dense_or_sparse_step*'   the compiled step alone (GIL-free; gcc inlines
                                   ``train_step`` into it)
  '*Engine_*train_step*'           the whole train_step call from Python, checks included
  '*Engine_*fit_epoch*'            the whole epoch call, gathers and steps
tools/README.md shows the comparison of two builds.
"""
import sys

import numpy as np
import scipy.sparse as sp

import fastmlp

DIMS = [16, 32, 1]

if __name__ == "__main__":
    workload = sys.argv[1]
    epochs = workload.startswith("epoch")
    repeats = int(sys.argv[2]) if len(sys.argv) > 2 else (20 if epochs else 2000)
    rows = {"online": 1, "tiny": 32}.get(workload, 4096)
    rng = np.random.default_rng(0)
    X = rng.normal(size=(rows, DIMS[0]))
    Y = rng.normal(size=(rows, DIMS[-1]))
    net = fastmlp.MLP(DIMS, loss="mse", dtype=np.float64, seed=0)
    if workload == "epoch-sparse":
        X[rng.random(X.shape) < 0.8] = 0
        X = sp.csr_matrix(X)
    if epochs:
        net.fit(X, Y, epochs=repeats, batch_size=32, lr=1e-3, seed=0)
    else:
        for _ in range(repeats):
            net.train_step(X, Y, lr=1e-3)
