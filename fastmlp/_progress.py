"""Per-epoch progress for ``MLP.fit(verbose=True)``: a tqdm bar, or plain lines without tqdm.

An epoch is one GIL-free call into the core, so progress advances once per epoch; there is
no per-batch hook to report from (and adding one would mean re-taking the GIL per batch).
tqdm is optional and imported only when progress is asked for, so ``import fastmlp`` never
imports it.
"""
from __future__ import annotations


class EpochProgress:
    """``update(loss, seconds)`` once per finished epoch; use as a context manager.

    With tqdm: one bar on stderr (tqdm's default stream), total = epochs, unit "epoch",
    postfix ``loss`` (mean training loss of the epoch) and ``samples/s`` (rows per second
    of the last epoch).  Without tqdm: one line per epoch on stdout, as ``fit`` printed
    before the bar existed.
    """

    def __init__(self, epochs: int, n_samples: int):
        self.epochs = epochs
        self.n_samples = n_samples
        self.epoch = 0
        try:
            from tqdm.auto import tqdm
        except ImportError:
            self._bar = None
        else:
            # disable=False: the caller asked for progress, so draw it even when stderr is
            # not a terminal (tqdm's disable=None would hide it there).
            self._bar = tqdm(total=epochs, unit="epoch", desc="fit", disable=False,
                             dynamic_ncols=True)

    def update(self, loss: float, seconds: float) -> None:
        self.epoch += 1
        if self._bar is None:
            print(f"epoch {self.epoch}/{self.epochs}  loss {loss:.6g}", flush=True)
            return
        rate = self.n_samples / seconds if seconds > 0 else float("inf")
        self._bar.set_postfix({"loss": f"{loss:.6g}", "samples/s": f"{rate:,.0f}"},
                              refresh=False)
        self._bar.update(1)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()

    def __enter__(self) -> "EpochProgress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
