"""Image samples in every writer, grayscale and RGB, with and without labels: a .png grid is
mode L or RGB, enlarged by the rule in plugkit.sampling's docstring and pixel for pixel the
samples; .npz and .npy hold the samples themselves. Runs are a few seconds of training on small
files written here, the way a user has them (an array, a folder of PNGs in class folders)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from helpers import run_python
from PIL import Image
from typer.testing import CliRunner

import plugkit
from plugkit import runs as run_records
from plugkit import sampling, training
from plugkit.cli import app
from plugkit.formats import grid

SMALL = {"vae": ["hidden=32", "latent_dim=4"], "gan": ["hidden=32", "latent_dim=8"]}
# name: (family, data, channels, height, width, classes)
KINDS = {
    "gray": ("vae", "gray.npy", 1, 8, 8, None),
    "gray-labelled": ("vae", "gray-folder", 1, 8, 8, ["cat", "dog"]),
    "rgb": ("vae", "rgb.npy", 3, 6, 10, None),  # not square: the longer side sets the factor
    "rgb-labelled": ("vae", "rgb-folder", 3, 8, 8, ["blue", "green", "red"]),
    "gan-rgb-labelled": ("gan", "rgb-folder", 3, 8, 8, ["blue", "green", "red"]),
}


def write_data(root):
    """An array per channel count, and a folder of PNGs in class folders per channel count."""
    rng = np.random.default_rng(0)
    np.save(root / "gray.npy", rng.random((30, 1, 8, 8), dtype=np.float32))
    np.save(root / "rgb.npy", rng.random((30, 3, 6, 10), dtype=np.float32))
    for folder, classes, channels in (("gray-folder", ["cat", "dog"], 1),
                                      ("rgb-folder", ["blue", "green", "red"], 3)):
        for k, name in enumerate(classes):
            (root / folder / name).mkdir(parents=True)
            for i in range(12):
                pixels = rng.integers(0, 120, (8, 8, channels), dtype=np.uint8)
                pixels[..., 2 - k if channels == 3 else 0] += np.uint8(120)  # a tint per class
                Image.fromarray(pixels.squeeze(2) if channels == 1 else pixels).save(
                    root / folder / name / f"{i}.png")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("grids")
    write_data(root)
    return {kind: training.train(training.TrainConfig(
        family=family, data=str(root / data), out=root / kind, epochs=1, batch_size=16,
        options=SMALL[family])) for kind, (family, data, *_) in KINDS.items()}


def expected_samples(run, n, seed=0, labels=None):
    """The samples, drawn the way plugkit.sampling documents (Run.draw), not read back from a
    writer; and the label of each."""
    run = run_records.Run(run)
    if labels is None:
        labels = run.labels(n)
    return np.concatenate(list(run.draw(n, seed, labels=labels))), labels


def factor(h, w):
    """The documented rule: the smallest whole factor that makes the longer side >= 64 px."""
    return max(1, math.ceil(64 / max(h, w)))


def check_grid(path, x, cols):
    """The .png at `path` is the grid of samples x (n, C, H, W), `cols` tiles a row: its mode,
    its size by the rule (2 px of white around tiles), every tile's pixels, the padding."""
    n, c, h, w = x.shape
    s, rows = factor(h, w), math.ceil(n / cols)
    png = Image.open(path)
    assert png.mode == ("L" if c == 1 else "RGB")
    assert png.size == (cols * (w * s + 2) + 2, rows * (h * s + 2) + 2)
    pixels = np.asarray(png).reshape(png.size[1], png.size[0], c)
    tiles = np.clip((x * 255).round(), 0, 255).astype(np.uint8).transpose(0, 2, 3, 1)
    # the brief's check, spelled out: the first tile's top-left pixel is the first sample's
    assert list(pixels[2, 2]) == [round(float(v) * 255) for v in x[0, :, 0, 0]]
    white = np.ones(pixels.shape[:2], bool)
    for i in range(n):
        top, left = 2 + (i // cols) * (h * s + 2), 2 + (i % cols) * (w * s + 2)
        tile = pixels[top:top + h * s, left:left + w * s]
        assert np.array_equal(tile, tiles[i].repeat(s, 0).repeat(s, 1)), f"tile {i}"
        white[top:top + h * s, left:left + w * s] = False
    assert (pixels[white] == 255).all()  # padding, and the empty places of the last row


def test_the_enlarging_rule():
    assert grid.grid_scale(8, 8, 8, 8) == 8  # digits: 64 px tiles
    assert grid.grid_scale(28, 28, 10, 10) == 3  # mnist: 84 px
    assert grid.grid_scale(6, 10, 3, 4) == 7  # the longer side
    assert grid.grid_scale(64, 64, 8, 8) == 1 == grid.grid_scale(200, 90, 2, 2)
    # 100 x 100 digits: x8 would be 6,602 px a side, x4 is 3,402, x5 4,202 > 4,096
    assert grid.grid_scale(8, 8, 100, 100) == 4
    assert grid.grid_scale(64, 64, 100, 100) == 1  # never below 1


@pytest.mark.parametrize("kind", KINDS)
def test_png_grid_is_the_samples_in_the_right_mode_and_size(runs, tmp_path, kind):
    out = sampling.sample(runs[kind], 10, tmp_path / "grid.png", seed=3)
    x, labels = expected_samples(runs[kind], 10, seed=3)
    assert x.shape[1:] == KINDS[kind][2:5]
    assert (labels is not None) == (KINDS[kind][5] is not None)
    check_grid(out, x, cols=4)  # 10 tiles: 4 a row, the square root rounded up


@pytest.mark.parametrize("suffix", [".npz", ".npy"])
@pytest.mark.parametrize("kind", KINDS)
def test_array_writers_hold_the_samples(runs, tmp_path, kind, suffix):
    out = sampling.sample(runs[kind], 10, tmp_path / f"s{suffix}", seed=3)
    x, labels = expected_samples(runs[kind], 10, seed=3)
    if suffix == ".npz":
        with np.load(out, allow_pickle=False) as f:
            got, saved = f["x"], f["labels"] if "labels" in f.files else None
        assert (saved is not None) == (labels is not None)  # labels exactly when conditional
        if labels is not None:
            assert np.array_equal(saved, labels) and (np.diff(labels) >= 0).all()  # class order
    else:
        got = np.load(out, allow_pickle=False)
    assert got.dtype == np.float32 and got.shape == (10, *KINDS[kind][2:5])
    assert np.array_equal(got, x)


@pytest.mark.parametrize("kind", ["rgb-labelled", "gan-rgb-labelled", "gray-labelled"])
def test_cli_per_class_grid_has_a_row_per_class(runs, tmp_path, kind):
    out = tmp_path / "classes.png"
    result = CliRunner().invoke(app, ["sample", str(runs[kind]), "--per-class", "2",
                                      "--out", str(out)])
    assert result.exit_code == 0, result.output
    classes = KINDS[kind][5]
    x, _ = expected_samples(runs[kind], 2 * len(classes),
                            labels=np.repeat(np.arange(len(classes)), 2))
    check_grid(out, x, cols=2)
    assert json.loads((tmp_path / "classes.png.json").read_text())["classes"] == classes


def test_cli_rgb_grid_in_a_real_process(runs, tmp_path):
    """The issue's command, as a user's shell runs it: it ended in a traceback in _write_png."""
    result = run_python("-m", "plugkit", "sample", str(runs["rgb"]), "--out", "grid.png",
                        cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    png = Image.open(tmp_path / "grid.png")
    s = factor(6, 10)  # 64 samples by default: 8 x 8 tiles of 42 x 70 px
    assert png.mode == "RGB" and png.size == (8 * (10 * s + 2) + 2, 8 * (6 * s + 2) + 2)


def test_sampling_from_python_as_a_notebook_does(runs, tmp_path):
    run = runs["rgb-labelled"]
    out = plugkit.sampling.sample(run, per_class=3, out=tmp_path / "classes.png", seed=1)
    assert out == tmp_path / "classes.png" and out.with_name("classes.png.json").exists()
    check_grid(out, expected_samples(run, 9, seed=1, labels=np.repeat(np.arange(3), 3))[0], 3)
    default = plugkit.sampling.sample(runs["gray"], n=5)  # the modality's first format
    assert default == runs["gray"] / "samples" / "samples.png"
    assert Image.open(default).mode == "L"
    # or draw the images and make the picture yourself: a folder of PNGs is 8-bit data, so
    # the samples come back as 0..255 bytes, what imshow and PIL take
    images, labels = plugkit.load(run).sample(6, per_class=2)
    assert labels.tolist() == [0, 0, 1, 1, 2, 2] and images.dtype == np.uint8
    picture = grid.grid_image(images, cols=2)
    assert picture.shape == (3 * (8 * 8 + 2) + 2, 2 * (8 * 8 + 2) + 2, 3)
    assert picture[2, 2].tolist() == images[0, :, 0, 0].tolist() and picture.dtype == np.uint8


def test_float_and_byte_grids_agree():
    """The .png writer builds its grid from bytes (a quarter of the memory); the figures and
    notebooks from floats: both give the same picture."""
    x = np.random.default_rng(0).random((7, 3, 5, 9), dtype=np.float32)
    as_bytes = (x * 255).round().astype(np.uint8)
    floats, picture = grid.grid_image(x), grid.grid_image(as_bytes)
    assert picture.dtype == np.uint8 and np.array_equal((floats * 255).round(), picture)


@pytest.mark.parametrize("channels", [1, 3])
def test_report_figures_draw_enlarged_grids(channels):
    """plugkit.metrics.figures draws its image grids with grid_image."""
    import matplotlib.pyplot as plt

    from plugkit.metrics import figures

    x = np.random.default_rng(0).random((20, channels, 8, 8), dtype=np.float32)
    fig = figures.image_grids(x, x[::-1])
    shown = fig.axes[0].get_images()[0].get_array()
    assert shown.shape[:2] == (4 * 66 + 2, 5 * 66 + 2)  # 4 rows of 5 tiles of 64 px
    plt.close(fig)
