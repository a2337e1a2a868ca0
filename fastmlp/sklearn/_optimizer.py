"""scikit-learn's SGD and Adam optimizers, as state handed to the core's update."""
import numpy as np

from fastmlp import _core


class Optimizer:
    """scikit-learn's SGD / Adam optimizer: hyper-parameters frozen at creation, the
    current learning rate, and the state the core updates in place (velocity, or Adam's
    two moments, in one flat array) with Adam's step count ``t``."""

    def __init__(self, est, layout, dtype):
        self.solver = est.solver
        self.learning_rate_init = est.learning_rate_init
        self.learning_rate = float(est.learning_rate_init)
        self.lr_schedule = est.learning_rate
        self.momentum = float(est.momentum)
        self.power_t = est.power_t
        self.beta_1, self.beta_2 = float(est.beta_1), float(est.beta_2)
        self.epsilon = float(est.epsilon)
        self.t = 0
        if self.solver == "adam":
            self.kind = "adam"
        elif self.momentum == 0:
            # v = 0·v − η·g, θ + v: bit for bit θ − η·g, so plain SGD without a velocity.
            self.kind = "sgd"
        else:
            self.kind = "nesterov" if est.nesterovs_momentum else "momentum"
        self.state = np.zeros(layout.state_size(self.kind), dtype=dtype)

    def step_size(self):
        """Learning rate handed to the core: η for SGD, η_init for Adam (the core applies
        Adam's bias correction)."""
        return self.learning_rate_init if self.kind == "adam" else self.learning_rate

    def attach(self, engine):
        engine.set_optimizer(self.kind, self.state, momentum=self.momentum,
                             beta1=self.beta_1, beta2=self.beta_2, eps=self.epsilon)
        engine.adam_steps = self.t

    def read_back(self, engine):
        if self.kind == "adam":
            self.t = engine.adam_steps
            if self.t:
                self.learning_rate = _core.adam_step_size(
                    self.learning_rate_init, self.beta_1, self.beta_2, self.t)

    def iteration_ends(self, time_step):
        if self.solver == "sgd" and self.lr_schedule == "invscaling":
            self.learning_rate = float(self.learning_rate_init) / (time_step + 1) ** self.power_t

    def trigger_stopping(self, msg, verbose):
        if self.solver != "sgd" or self.lr_schedule != "adaptive":
            if verbose:
                print(msg + " Stopping.")
            return True
        if self.learning_rate <= 1e-6:
            if verbose:
                print(msg + " Learning rate too small. Stopping.")
            return True
        self.learning_rate /= 5.0
        if verbose:
            print(msg + " Setting learning rate to %f" % self.learning_rate)
        return False
