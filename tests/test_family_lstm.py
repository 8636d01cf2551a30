"""The built-in char-level LSTM family: loss, layout, sampler, native op, and end to end."""

import json
import math

import pytest
import torch
from helpers import assert_ran, run_recorded
from torch import nn

from plugkit import options, plugins
from plugkit.errors import UsageError
from plugkit.families import lstm
from plugkit.family import Batch, DataInfo
from plugkit.formats import text
from plugkit.testing import FamilyTests

LINES = ["abc", "ab", "cab", "b", "ca", "abcab", "bc", "a"]
META = text.text_meta(LINES)  # vocab a, b, c; longest line 5
REGISTERED = pytest.mark.skipif("lstm" not in plugins.entries(), reason=(
    'the "lstm" entry point is not installed yet (pyproject: '
    'lstm = "plugkit.families.lstm:LSTM", then reinstall)'))


def family(**options):
    # no dropout unless asked: these tests compare with nn.LSTM and count on a falling loss
    small = {"hidden": 16, "layers": 2, "embed": 8, "dropout": 0.0, **options}
    return lstm.LSTM(lstm.Options(**small), DataInfo("text", META), torch.device("cpu"))


def batch(lines=LINES, length=None):
    return Batch(torch.from_numpy(text.encode(lines, META["vocab"], length)))


def test_layers_match_nn_lstm_with_the_same_state_dict():
    fam = family()
    ref = nn.LSTM(8, 16, num_layers=2)
    ref.load_state_dict(fam.net.lstm.state_dict())  # same names and shapes as nn.LSTM's
    x = torch.randn(7, 3, 8)
    y, state = fam.net.lstm(x)
    y_ref, (h_ref, c_ref) = ref(x)
    torch.testing.assert_close(y, y_ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(torch.stack([h for h, _ in state]), h_ref, rtol=1e-5, atol=1e-5)
    bound = 1 / 16 ** 0.5
    assert all(p.abs().max() <= bound for p in fam.net.lstm.parameters())  # PyTorch's init


def test_train_steps_lower_the_loss_on_a_fixed_batch():
    fam = family(lr=1e-2)
    b = batch()
    losses = [fam.train_step(b)["loss"] for _ in range(40)]
    assert losses[0] == pytest.approx(math.log(4), rel=0.1)  # uniform over a, b, c and end
    assert losses[-1] < 0.7 * losses[0]
    total, count = fam.val_loss(b)
    assert count == int((b.x != 0).sum() + len(b.x))  # every character and each end token
    assert 0 < total / count < losses[0]  # finite, and learnt


def test_loss_ignores_the_padding_after_the_end_token():
    fam = family(dropout=0.3)
    assert fam.val_loss(batch()) == pytest.approx(fam.val_loss(batch(length=12)), rel=1e-6)


def lines(fam, n, seed=0, generator=None, **settings):
    """n samples as the core draws them: settings validated into Settings, tokens decoded."""
    chosen = options.build(fam.Settings, settings, "lstm", "sampler setting")
    generator = generator or torch.Generator().manual_seed(seed)
    return text.decode(fam.sample(n, generator=generator, settings=chosen), fam.vocab)


def test_sampling_is_deterministic_and_within_max_len():
    fam = family(max_len=4)
    first = lines(fam, 20, seed=1)
    assert first == lines(fam, 20, seed=1) and first != lines(fam, 20, seed=2)
    assert all(len(s) <= 4 and set(s) <= set("abc") for s in first)
    assert fam.max_len == 4 and family().max_len == 5 + 8  # default: a bit above the data


def test_samples_are_tokens_the_core_decodes():
    fam = family(max_len=6)
    tokens = fam.sample(5, generator=torch.Generator().manual_seed(0))
    assert tokens.dtype == torch.int64 and tokens.shape[0] == 5
    assert 0 <= tokens.min() and tokens.max() <= len(fam.vocab)


def test_prefix_top_k_and_temperature():
    fam = family(lr=1e-2)
    for _ in range(30):
        fam.train_step(batch())
    gen = torch.Generator().manual_seed(0)
    with_prefix = lines(fam, 10, generator=gen, prefix="ca")
    assert all(s.startswith("ca") for s in with_prefix)
    greedy = lines(fam, 10, generator=gen, top_k=1)
    assert len(set(greedy)) == 1  # k = 1 leaves one choice at every step
    cold = lines(fam, 10, generator=gen, temperature=1e-4)
    assert cold == greedy
    hot = lines(fam, 50, generator=gen, temperature=5.0)
    assert len(set(hot)) > 5
    assert lines(fam, 3, generator=gen, prefix="abcabcabcabcabc") == ["abcabcabcabcabc"] * 3


def test_bad_sampling_settings_are_usage_errors():
    fam = family()
    with pytest.raises(UsageError, match=r"never saw: \['x', 'z'\]"):
        lines(fam, 2, prefix="axz")
    with pytest.raises(UsageError, match="temperature must be > 0"):
        lines(fam, 2, temperature=0)
    with pytest.raises(UsageError, match="sampler setting top_k must be >= 0"):
        lines(fam, 2, top_k=-1)
    with pytest.raises(UsageError, match="unknown sampler setting 'beam' for lstm; valid: "
                                         "temperature, top_k, prefix"):
        lines(fam, 2, beam=3)
    with pytest.raises(UsageError, match="sampler setting temperature must be a number"):
        lines(fam, 2, temperature="hot")


def test_the_lstm_op_runs(backend):
    fam = family()
    _, names = run_recorded(fam.train_step, batch())
    assert_ran(backend, names, "lstm_layer")
    _, names = run_recorded(fam.sample, 2, generator=torch.Generator())
    assert_ran(backend, names, "lstm_layer")


@REGISTERED
def test_train_and_sample_text_end_to_end(tmp_path):
    from plugkit import sampling, training

    data = tmp_path / "words.txt"
    data.write_text("\n".join(LINES * 8) + "\n")
    config = training.TrainConfig(family="lstm", data=str(data), out=tmp_path / "run", epochs=2,
                                  batch_size=16, options=["hidden=16", "embed=8", "layers=1"])
    rows = []
    run = training.train(config, rows.append)
    assert len(rows) == 2 and all(r["val_loss"] > 0 for r in rows)
    out = sampling.sample(run, n=5, seed=3, prefix="a", temperature=0.8, top_k=2)
    assert out == run / "samples" / "samples.txt"
    lines = out.read_text().splitlines()
    assert len(lines) == 5 and all(s.startswith("a") for s in lines)
    sidecar = json.loads((run / "samples" / "samples.txt.json").read_text())
    assert sidecar["settings"] == {"prefix": "a", "temperature": 0.8, "top_k": 2}
    assert sampling.sample(run, n=5, seed=3, prefix="a", temperature=0.8, top_k=2,
                           out=tmp_path / "again.txt").read_text().splitlines() == lines
    with pytest.raises(UsageError, match=r"\.txt"):
        sampling.sample(run, n=2, out=tmp_path / "x.png")


def test_validation_and_sampling_read_the_moving_average():
    fam, plain = family(lr=1e-2, ema=0.999), family(lr=1e-2)
    assert fam.model is fam.average and plain.model is plain.net and plain.average is None
    assert set(fam.modules()) == {"lstm", "lstm_ema"} and set(plain.modules()) == {"lstm"}
    for _ in range(20):
        fam.train_step(batch())
    trained, averaged = fam.net.state_dict(), fam.average.state_dict()
    assert all(not torch.equal(trained[k], averaged[k]) for k in trained)  # it lags
    total, _ = fam.val_loss(batch())
    fam.model = fam.net
    assert fam.val_loss(batch())[0] != total


def test_an_epoch_without_a_better_validation_loss_lowers_the_learning_rate():
    fam, kept = family(lr=1e-2, lr_drop=0.5), family(lr=1e-2)
    for f in (fam, kept):
        f.validated(True)
        f.validated(False)
        f.validated(False)
    assert fam.optimizer.param_groups[0]["lr"] == pytest.approx(1e-2 / 4)
    assert kept.optimizer.param_groups[0]["lr"] == 1e-2  # the default: never


def test_weight_drop_masks_the_recurrent_weights_in_training_only():
    fam = family(weight_drop=0.5)
    stack = fam.net.lstm
    w_hh = stack.weights(0)[1]
    stack.train()
    dropped = stack.dropped(0)[1]
    zeroed = dropped == 0
    assert 0.3 < zeroed.float().mean() < 0.7  # about half the connections, one mask
    torch.testing.assert_close(dropped[~zeroed], 2 * w_hh[~zeroed])  # the rest scaled by 2
    dropped.sum().backward()
    assert w_hh.grad is not None and torch.equal(w_hh.grad == 0, zeroed)
    stack.eval()
    assert stack.dropped(0)[1] is w_hh  # validation and sampling: the whole weights
    plain = family().net.lstm.train()  # weight_drop 0: nothing drawn
    assert plain.dropped(0)[1] is plain.weights(0)[1]


class TestLSTMConformance(FamilyTests):
    family = lstm.LSTM
    info = DataInfo("text", META)
    options = ["hidden=16", "embed=8", "lr=0.01"]

    def batch(self):
        return batch()


class TestLSTMSequenceConformance(FamilyTests):
    family = lstm.LSTM
    info = DataInfo("sequence", {"length": 12, "features": 2, "mean": [0.0, 0.0],
                                 "std": [1.0, 1.0]})
    options = ["hidden=16", "embed=8", "lr=0.01"]

    def batch(self):
        t = torch.arange(12.0)
        phase = torch.rand(8, 1, generator=torch.Generator().manual_seed(0)) * 6
        return Batch(torch.stack([torch.sin(t + phase), torch.cos(t + phase)], dim=2))
