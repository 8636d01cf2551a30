"""Family discovery through real distribution metadata, broken-plugin isolation, options."""

import json
import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass

import pytest
from typer.testing import CliRunner

from plugkit import options, plugins
from plugkit.cli import app
from plugkit.errors import PlugkitError, UsageError
from plugkit.family import Family

GOOD = '''
from dataclasses import dataclass
from plugkit.family import Family
from plugkit.options import option

@dataclass
class Options:
    order: int = option(3, "context length in characters", min=1, max=10)
    smooth: bool = option(True, "add-one smoothing")

class Markov(Family):
    name = "markov"
    description = "character n-gram model"
    modalities = ("text",)
    Options = Options
'''

OLD_API = '''
from plugkit.family import Family

class Old(Family):
    name = "old"
    description = "written for plugin API 0"
    modalities = ("text",)
    api_version = 0
'''


def make_distribution(root, name, entry_points: dict[str, str], modules: dict[str, str]):
    """A real installed distribution: a .dist-info with METADATA and entry_points.txt."""
    info = root / f"{name.replace('-', '_')}-1.2.3.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.2.3\n")
    lines = [f"{k} = {v}" for k, v in entry_points.items()]
    (info / "entry_points.txt").write_text("[plugkit.models]\n" + "\n".join(lines) + "\n")
    for module, source in modules.items():
        (root / f"{module}.py").write_text(textwrap.dedent(source))


@pytest.fixture
def site(tmp_path, monkeypatch):
    """A site directory with one good family and four broken ones, on sys.path."""
    make_distribution(tmp_path, "plugkit-markov", {"markov": "pk_markov:Markov"},
                      {"pk_markov": GOOD})
    make_distribution(
        tmp_path, "plugkit-broken",
        {"crashes": "pk_crash:Thing", "missing": "pk_markov:Nope", "old": "pk_old:Old",
         "notafamily": "pk_markov:Options"},
        {"pk_crash": "raise RuntimeError('boom at import')", "pk_old": OLD_API},
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    plugins.entries.cache_clear()
    yield tmp_path
    plugins.entries.cache_clear()
    for module in ("pk_markov", "pk_crash", "pk_old"):
        sys.modules.pop(module, None)


def test_discovers_families_and_isolates_broken_ones(site):
    found = plugins.entries()
    assert found["markov"].family.name == "markov"
    assert found["markov"].distribution == "plugkit-markov" and found["markov"].version == "1.2.3"
    assert "RuntimeError: boom at import" in found["crashes"].error
    assert "AttributeError" in found["missing"].error
    assert "targets plugin API 0, this plugkit speaks 2" in found["old"].error
    assert "is not a subclass of plugkit.family.Family" in found["notafamily"].error


def test_get_explains_unknown_and_broken(site):
    assert plugins.get("markov").name == "markov"
    with pytest.raises(UsageError, match=r"unknown family 'markof'; installed: .*\bmarkov\b"):
        plugins.get("markof")
    with pytest.raises(PlugkitError, match="family 'crashes' is broken: cannot load"):
        plugins.get("crashes")


def test_env_limits_which_families_load(site, monkeypatch):
    monkeypatch.setenv("PLUGKIT_FAMILIES", "markov")
    plugins.entries.cache_clear()
    assert list(plugins.entries()) == ["markov"]


def test_list_and_info_through_the_cli(site):
    runner = CliRunner()
    listed = runner.invoke(app, ["list", "--json"])
    assert listed.exit_code == 0, listed.output
    rows = {r["name"]: r for r in json.loads(listed.output)}
    assert rows["markov"]["status"] == "ok" and rows["markov"]["modalities"] == ["text"]
    assert rows["old"]["status"].startswith("broken: targets plugin API 0")
    shown = runner.invoke(app, ["info", "markov", "--json"])
    assert shown.exit_code == 0, shown.output
    assert [o["name"] for o in json.loads(shown.output)["options"]] == ["order", "smooth"]


def run_cli(*args, pythonpath=""):
    env = {**os.environ, "PYTHONPATH": pythonpath}
    return subprocess.run([sys.executable, "-m", "plugkit", *args], capture_output=True,
                          text=True, env=env, timeout=120)


def test_real_subprocess_one_line_errors_and_exit_codes(site):
    listed = run_cli("list", pythonpath=str(site))
    assert listed.returncode == 0 and "markov" in listed.stdout and "broken" in listed.stdout
    unknown = run_cli("info", "markof", pythonpath=str(site))
    assert unknown.returncode == 2
    lines = unknown.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: unknown family 'markof'; installed: ")
    installed = lines[0].split("installed: ")[1].removesuffix(" (see `plugkit list`)")
    assert {"crashes", "markov", "missing", "notafamily", "old"} <= set(installed.split(", "))
    broken = run_cli("info", "crashes", pythonpath=str(site))
    assert broken.returncode == 1 and len(broken.stderr.strip().splitlines()) == 1
    assert "Traceback" not in broken.stderr


def test_help_imports_neither_torch_nor_families():
    code = ("import sys\nfrom plugkit.cli import main\nsys.argv = ['plugkit', '--help']\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            "print('torch' in sys.modules, any(m.startswith(('pk_', 'plugkit.families'))\n"
            "                                   for m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip().splitlines()[-1] == "False False"


@dataclass
class Opts:
    size: int = options.option(16, "width", min=1)
    rate: float = options.option(1e-3, "learning rate", min=0.0, max=1.0)
    kind: str = options.option("mlp", "network", choices=("mlp", "conv"))
    ema: bool = options.option(False, "keep an EMA copy")

    def __post_init__(self):
        if self.kind == "conv" and self.size < 8:
            raise ValueError("conv needs size >= 8")


def test_options_parse_and_convert():
    parsed = options.parse(Opts, ["size=32", "rate=0.01", "kind=conv", "ema=yes"], "fam")
    assert parsed == Opts(32, 0.01, "conv", True)
    assert options.parse(Opts, [], "fam") == Opts()


@pytest.mark.parametrize("pairs,message", [
    (["sise=3"], r"unknown option 'sise' for fam; valid: size, rate, kind, ema "
                 r"\(see `plugkit info fam`\)"),
    (["size"], "options are key=value, got 'size'"),
    (["size=abc"], "option size must be an integer, got 'abc'"),
    (["rate=fast"], "option rate must be a number, got 'fast'"),
    (["ema=maybe"], "option ema must be true or false, got 'maybe'"),
    (["size=0"], "option size must be >= 1, got 0"),
    (["rate=2"], r"option rate must be <= 1.0, got 2.0"),
    (["kind=rnn"], "option kind must be one of mlp, conv, got 'rnn'"),
    (["kind=conv", "size=4"], "invalid options for fam: conv needs size >= 8"),
])
def test_options_reject_bad_input(pairs, message):
    with pytest.raises(UsageError, match=message):
        options.parse(Opts, pairs, "fam")


def test_options_describe():
    rows = options.describe(Opts)
    assert [(r.name, r.type, r.default) for r in rows] == [
        ("size", "int", 16), ("rate", "float", 1e-3), ("kind", "str", "mlp"),
        ("ema", "bool", False)]
    assert rows[2].choices == ("mlp", "conv") and rows[0].help == "width"


def test_family_base_defaults():
    assert Family.api_version == 2 and Family.conditional is False


def test_settings_by_value_from_python():
    """Values given in Python (not strings): numpy's numbers are numbers, a bool is no number."""
    import numpy as np

    from plugkit.families.lstm import Settings

    built = options.build(Settings, {"top_k": np.int64(3), "temperature": np.float32(0.5)},
                          "lstm", "sampler setting")
    assert built == Settings(temperature=0.5, top_k=3) and type(built.top_k) is int
    for bad, message in [({"top_k": True}, "top_k must be an integer, got True"),
                         ({"top_k": 2.5}, "top_k must be an integer, got 2.5"),
                         ({"prefix": 3}, "prefix must be text, got 3")]:
        with pytest.raises(UsageError, match=message):
            options.build(Settings, bad, "lstm", "sampler setting")
