"""MLP.fit(verbose=...): a tqdm bar per epoch on stderr, plain lines without tqdm, and
silence when not asked."""
import re
import sys

import numpy as np
import pytest

import fastmlp


def data(n=300, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 4)).astype(np.float32)
    y = (X[:, 0] > 0).astype(np.int64)
    return X, y


def net():
    return fastmlp.MLP([4, 8, 2], loss="softmax_cross_entropy", seed=0)


def hide_tqdm(monkeypatch):
    # A None entry in sys.modules makes `import tqdm` (and tqdm.auto) raise ImportError,
    # as if tqdm were not installed, even when an earlier test imported it.
    for name in [m for m in sys.modules if m == "tqdm" or m.startswith("tqdm.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "tqdm", None)


def test_silent_unless_verbose(capfd):
    X, y = data()
    net().fit(X, y, epochs=3)
    out, err = capfd.readouterr()
    assert out == "" and err == ""


def test_bar_counts_epochs_and_shows_loss(capfd):
    pytest.importorskip("tqdm")
    X, y = data()
    losses = net().fit(X, y, epochs=4, batch_size=32, lr=0.1, verbose=True)
    out, err = capfd.readouterr()
    assert out == ""        # the bar goes to stderr only
    # tqdm redraws the line with \r; the last drawing is the finished bar.
    final = err.replace("\r", "\n").strip().splitlines()[-1]
    assert re.search(r"\b4/4\b", final), final
    assert "epoch" in final
    # The postfix shows the last epoch's loss as fit returns it (6 significant digits)
    # and a throughput.
    assert f"loss={losses[-1]:.6g}" in final, final
    assert re.search(r"samples/s=[\d,]+", final), final
    # It advanced once per epoch, not once per batch: the intermediate counts are 0..4 of 4.
    counts = {int(m) for m in re.findall(r"\b(\d+)/4\b", err)}
    assert counts <= {0, 1, 2, 3, 4} and 4 in counts


def test_bar_closed_when_fit_diverges(capfd):
    pytest.importorskip("tqdm")
    X, y = data()
    with pytest.raises(fastmlp.DivergenceError):
        net().fit(X * 1e30, y, epochs=5, lr=1e30, verbose=True)
    err = capfd.readouterr().err
    # The bar was closed (tqdm ends a closed bar with a newline) at 0 finished epochs.
    assert err.endswith("\n")
    assert "0/5" in err


def test_plain_lines_without_tqdm(monkeypatch, capfd):
    hide_tqdm(monkeypatch)
    with pytest.raises(ImportError):
        import tqdm  # noqa: F401  (the hiding works)
    X, y = data()
    losses = net().fit(X, y, epochs=3, lr=0.1, verbose=True)
    out, err = capfd.readouterr()
    assert err == ""
    assert out.splitlines() == [f"epoch {i + 1}/3  loss {loss:.6g}"
                                for i, loss in enumerate(losses)]


def test_import_does_not_import_tqdm(tmp_path):
    import subprocess
    code = "import sys, fastmlp; print('tqdm' in sys.modules)"
    # From an empty folder, so the uncompiled source tree cannot shadow the installed package.
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=tmp_path, timeout=60)
    assert res.stdout.strip() == "False"
