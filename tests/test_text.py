"""Text in the core: tokens for training (plugkit.formats.text) and text-only sampling flags."""

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from plugkit.cli import app
from plugkit.data import Dataset
from plugkit.formats import codec, text


def test_encode_decode_round_trip():
    vocab = ["a", "b", "é", "z"]
    lines = ["ab", "", "zéa", "b"]
    x = text.encode(lines, vocab)
    assert x.dtype == np.int64 and x.shape == (4, 4)  # longest line + 1: always an end token
    assert x[0].tolist() == [1, 2, 0, 0] and x[2].tolist() == [4, 3, 1, 0]
    assert text.decode(x, vocab) == lines
    assert text.decode(torch.from_numpy(x), vocab) == lines  # tensors too


def test_decode_stops_at_the_first_end_token():
    assert text.decode(np.array([[1, 0, 2, 2], [2, 2, 2, 2]]), ["a", "b"]) == ["a", "bbbb"]


def test_encode_rejects_unknown_characters_and_long_lines():
    with pytest.raises(ValueError, match=r"not in the vocabulary: \['c', 'd'\]"):
        text.encode(["abd", "c"], ["a", "b"])
    with pytest.raises(ValueError, match="at most 2 fit"):
        text.encode(["aaa"], ["a"], length=3)
    assert text.encode([], ["a"]).shape == (0, 1)


def test_text_meta_records_vocab_and_longest_line():
    assert text.text_meta(["ba", "abc"]) == {"vocab": ["a", "b", "c"], "max_length": 3}


def test_training_turns_text_into_tokens():
    ds = Dataset("t", "text", ["ab", "b"], meta=text.text_meta(["ab", "b"]))
    x, y = codec.encode(ds)
    assert y is None and x.dtype == torch.int64 and x.tolist() == [[1, 2, 0], [2, 0, 0]]


def test_text_flags_on_an_image_run_are_usage_errors(tmp_path):
    runner = CliRunner()
    run = tmp_path / "run"
    trained = runner.invoke(app, ["train", "vae", "--out", str(run), "--epochs", "1",
                                  "-o", "hidden=16", "-o", "latent_dim=2", "--batch-size", "512"])
    assert trained.exit_code == 0, trained.output
    for flag in (["--prefix", "ab"], ["--temperature", "0.5"], ["--top-k", "3"]):
        result = runner.invoke(app, ["sample", str(run), "--n", "2", *flag])
        setting = flag[0][2:].replace("-", "_")
        assert result.exit_code == 2, result.output
        assert f"unknown sampler setting '{setting}' for vae; valid: where" in result.output
    result = runner.invoke(app, ["sample", str(run), "--n", "2", "--out", str(tmp_path / "a.txt")])
    assert result.exit_code == 2 and ".png" in result.output
    assert runner.invoke(app, ["sample", str(run), "--n", "2"]).exit_code == 0  # unaffected
