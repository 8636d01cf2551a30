"""Text with long lines (a book without line breaks): cut into char-rnn windows, trained, sampled.

A line longer than max_length (default 256) becomes consecutive windows (plugkit.formats.text.cut);
a window that the line continues past is encoded without an end token, so the model learns to
predict the next character there, never that the line ends.
"""

import json
import math
import tracemalloc
from itertools import pairwise

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import plugkit
from plugkit import plugins
from plugkit.cli import app
from plugkit.data import DataError, load
from plugkit.errors import UsageError
from plugkit.family import Batch, DataInfo
from plugkit.formats import codec, text

runner = CliRunner()
WORDS = np.array(["the", "quick", "brown", "fox", "jumps", "over", "a", "lazy", "dog", "and"])
SMALL = ["-o", "hidden=16", "-o", "embed=8", "-o", "layers=1"]


def book(chars: int, seed: int = 0) -> str:
    """Random words, no line break: `chars` characters of a book written as one line."""
    idx = np.random.default_rng(seed).integers(0, len(WORDS), chars // 2 + 1)
    return " ".join(WORDS[idx])[:chars]


def uncut(rows: list[str]) -> str:
    """The text the rows were cut from: each Window's extra character dropped."""
    return "".join(row[:-1] if isinstance(row, text.Window) else row for row in rows)


@pytest.mark.parametrize("n", [1, 4, 5, 6, 8, 9, 40, 41])
def test_cut_windows_concatenate_back_to_the_line(n):
    line = book(n, seed=n)
    rows = text.cut([line], 4)
    assert uncut(rows) == line
    assert all(type(r) is text.Window and len(r) == 5 for r in rows[:-1])  # 4 + the next one
    assert type(rows[-1]) is str and 1 <= len(rows[-1]) <= 4  # the last one ends the line
    assert all(a[-1] == b[0] for a, b in pairwise(rows))  # each predicts its successor
    assert len(rows) == max(1, math.ceil(n / 4))


def test_cut_windows_are_encoded_without_an_end_token():
    rows = text.cut(["ab", "abcbacab", "c"], 3)
    assert rows == ["ab", "abcb", "baca", "ab", "c"]
    meta = text.text_meta(rows)
    assert meta == {"vocab": ["a", "b", "c"], "max_length": 3, "cut": 2}
    x = text.encode(rows, meta["vocab"])
    assert x.tolist() == [[1, 2, 0, 0], [1, 2, 3, 2], [2, 1, 3, 1], [1, 2, 0, 0], [3, 0, 0, 0]]
    with pytest.raises(ValueError, match="exactly 6"):  # padding after a window reads as its end
        text.encode(rows, meta["vocab"], length=6)


def lstm_family(meta, **options):
    lstm = plugins.get("lstm")
    opts = lstm.Options(**{"hidden": 16, "layers": 1, "embed": 8, **options})
    return lstm(opts, DataInfo("text", meta), torch.device("cpu"))


def test_the_loss_of_a_cut_window_predicts_its_next_character_never_an_end():
    line = book(2_000, seed=1)
    rows = text.cut([line], 32)
    meta = text.text_meta(rows)
    fam = lstm_family(meta, lr=1e-2)
    x = torch.from_numpy(text.encode(rows, meta["vocab"]))  # (B, 33): no row but the last has 0
    windows = x[:-1]
    total, count = fam.val_loss(Batch(windows))
    assert count == windows.numel()  # 33 targets a row: 32 characters and the next one
    fam.net.eval()
    with torch.no_grad():  # the loss by hand: characters only, read after the start token
        logits, _ = fam.net(torch.nn.functional.pad(windows[:, :-1], (1, 0)))  # (B, 33, V+1)
        by_hand = torch.nn.functional.cross_entropy(logits.transpose(1, 2), windows,
                                                    reduction="sum")
    assert total == pytest.approx(by_hand.item(), rel=1e-5)

    def p_end() -> float:  # mean probability of an end token after a whole window
        fam.net.eval()
        with torch.no_grad():
            logits, _ = fam.net(torch.nn.functional.pad(windows, (1, 0)))
        return logits[:, -1].softmax(1)[:, text.END].mean().item()

    before = p_end()
    for _ in range(30):
        fam.train_step(Batch(windows))
    assert p_end() < before / 3  # a cut teaches "the text goes on", not "the line ends"


def test_a_10mb_line_loads_into_bounded_memory(tmp_path):
    line = book(10_000_000)
    path = tmp_path / "book.txt"
    path.write_text(line + "\n")
    tracemalloc.start()
    try:
        ds = load(str(path))
        _, peak_load = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        x, _ = codec.encode(ds)
        _, peak_encode = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(ds) == math.ceil(len(line) / text.MAX_LENGTH) and uncut(ds.x) == line
    assert ds.meta["max_length"] == text.MAX_LENGTH and ds.meta["cut"] == len(ds) - 1
    assert tuple(x.shape) == (len(ds), text.MAX_LENGTH + 1)  # 80 MB of int64, not [1, 10M]
    # Measured: load 29 MiB, encode 128 MiB (the 77 MiB of tokens included); loose bounds.
    assert peak_load < 100 * 2**20, f"load peaked at {peak_load / 2**20:.0f} MiB"
    assert peak_encode < 300 * 2**20, f"encode peaked at {peak_encode / 2**20:.0f} MiB"


def test_a_book_on_one_line_trains_and_samples_through_the_cli(tmp_path):
    (tmp_path / "book.txt").write_text(book(200_000) + "\n")
    run = tmp_path / "run"
    result = runner.invoke(app, ["train", "lstm", "--data", str(tmp_path / "book.txt"),
                                 "--out", str(run), "--epochs", "1", "--batch-size", "128",
                                 *SMALL])
    assert result.exit_code == 0, result.output
    record = json.loads((run / "run.json").read_text())
    assert record["status"] == "done"
    meta = record["data"]["meta"]
    assert meta["max_length"] == 256 and meta["cut"] == math.ceil(200_000 / 256) - 1
    result = runner.invoke(app, ["sample", str(run), "--n", "4", "--out", str(tmp_path / "s.txt")])
    assert result.exit_code == 0, result.output
    lines = (tmp_path / "s.txt").read_text().split("\n")
    assert len(lines) == 5 and lines[-1] == ""  # four lines, each ended by a newline
    assert all(len(s) <= 256 and set(s) <= set(meta["vocab"]) for s in lines)
    assert plugkit.load(run).model().max_len == 256  # as long as the windows it read, by default


def test_short_lines_and_one_long_line_train_together(tmp_path):
    names = [str(w) for w in WORDS] * 20
    long = book(50_000, seed=2)
    (tmp_path / "mix.txt").write_text("\n".join(names[:100] + [long] + names[100:]) + "\n")
    ds = load(str(tmp_path / "mix.txt"))
    rows = text.cut([long], 256)
    assert ds.x == names[:100] + rows + names[100:]  # short lines whole, in place
    assert ds.meta["max_length"] == 256 and ds.meta["cut"] == len(rows) - 1
    x, _ = codec.encode(ds)
    ended = (x == text.END).any(1)
    assert ended.sum() == len(names) + 1 and not ended[100:100 + len(rows) - 1].any()
    run = tmp_path / "run"
    result = runner.invoke(app, ["train", "lstm", "--data", str(tmp_path / "mix.txt"),
                                 "--out", str(run), "--epochs", "1", "--batch-size", "64",
                                 *SMALL])
    assert result.exit_code == 0, result.output
    assert json.loads((run / "run.json").read_text())["status"] == "done"


def test_max_length_is_a_setting_of_the_data(tmp_path):
    (tmp_path / "t.txt").write_text("abcdefghij\nabc\n")
    ds = load(str(tmp_path / "t.txt"), max_length=4)
    assert ds.x == ["abcde", "efghi", "ij", "abc"] and ds.meta["max_length"] == 4
    whole = load(str(tmp_path / "t.txt"))  # 10 characters: under the default
    assert whole.x == ["abcdefghij", "abc"] and "cut" not in whole.meta
    with pytest.raises(UsageError, match="`max_length` must be at least 1, got 0"):
        load(str(tmp_path / "t.txt"), max_length=0)
    with pytest.raises(UsageError, match="cuts lines of text, and digits is read as image"):
        load("digits", max_length=8)
    np.save(tmp_path / "a.npy", np.zeros((4, 3), np.float32))
    with pytest.raises(UsageError, match="cuts lines of text.*table data"):
        load(str(tmp_path / "a.npy"), max_length=8)
    with pytest.raises(UsageError, match=r"`window`"):
        load(str(tmp_path / "a.npy"), window=2, max_length=8)


def test_max_tokens_still_bounds_the_padded_tokens(tmp_path, monkeypatch):
    # Rows are at most max_length + 1 tokens now, so only the size of the whole text can
    # exceed the bound: many rows padded to the longest one.
    (tmp_path / "t.txt").write_text("a" * 1000 + "\n" + "b\n" * 300)
    assert len(load(str(tmp_path / "t.txt"))) == 4 + 300
    monkeypatch.setattr(text, "MAX_TOKENS", 304 * 257 - 1)
    with pytest.raises(DataError, match=r"t\.txt: 304 rows of up to 256 characters.*GiB"):
        load(str(tmp_path / "t.txt"))
