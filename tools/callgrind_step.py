"""Instruction counts of a training step, by callgrind: repeatable where timings are not.

    valgrind --tool=callgrind --collect-atstart=no --toggle-collect='TOGGLE' \
        python tools/callgrind_step.py WORKLOAD [STEPS]

WORKLOAD is one of the benchmark's step workloads ("online": [16, 32, 1], 1 row; "tiny":
[16, 32, 1], 32 rows; mse, float64, plain SGD).  TOGGLE is a C function pattern of the
compiled core: '*_core_dense_or_sparse_step*' counts the compiled step alone (the GIL-free
`train_step`, which gcc inlines into it),
'*Engine_*train_step*' the whole call from Python (checks included).  tools/README.md
gives the comparison of two builds.
"""
import sys

import numpy as np

import fastmlp

WORKLOADS = {"online": ([16, 32, 1], 1), "tiny": ([16, 32, 1], 32)}

if __name__ == "__main__":
    dims, rows = WORKLOADS[sys.argv[1]]
    steps = int(sys.argv[2]) if len(sys.argv) > 2 else 2000
    rng = np.random.default_rng(0)
    X = rng.normal(size=(rows, dims[0]))
    Y = rng.normal(size=(rows, dims[-1]))
    net = fastmlp.MLP(dims, loss="mse", dtype=np.float64, seed=0)
    for _ in range(steps):
        net.train_step(X, Y, lr=1e-3)
