"""The `conditional` column of `plugkit list` / `plugkit info` tells the truth for the built-in
families, and the conformance suite (plugkit.testing) catches a family whose flag does not."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from plugkit.cli import app
from plugkit.family import DataInfo, Family
from plugkit.testing import FamilyTests

runner = CliRunner()
BUILT_IN = {"vae": True, "gan": True, "lstm": False}  # vae, gan: labels (images), --where (tables)


def test_list_and_info_say_which_families_sample_by_class():
    listed = runner.invoke(app, ["list", "--json"])
    assert listed.exit_code == 0, listed.output
    rows = {r["name"]: r for r in json.loads(listed.output)}
    assert {name: rows[name]["conditional"] for name in BUILT_IN} == BUILT_IN
    for name, conditional in BUILT_IN.items():
        shown = runner.invoke(app, ["info", name, "--json"])
        assert shown.exit_code == 0, shown.output
        assert json.loads(shown.output)["conditional"] is conditional, name
    table = runner.invoke(app, ["info", "vae"])
    assert "conditional: yes" in table.output


class Shade(Family):
    """A tiny image family: every pixel is one learned value, plus the label / 10 when it learns
    labels. The subclasses below get the flag or the conditioning wrong, one way each."""

    name = "shade"
    description = "one learned grey, shifted by the label"
    modalities = ("image",)
    conditional = True
    learns_labels = True  # sets num_classes on labelled data
    uses_labels = True  # the samples depend on the labels given

    def __init__(self, options, info: DataInfo, device: torch.device) -> None:
        super().__init__(options, info, device)
        self.value = torch.nn.Parameter(torch.tensor(0.3))
        self.num_classes = len(info.classes or []) if self.learns_labels else 0

    def sample(self, n, *, generator, labels=None, **settings):
        m = self.info.meta
        shift = labels.float() / 10 if labels is not None and self.uses_labels else \
            torch.zeros(n)
        pixels = (self.value.detach() + shift).clamp(0, 1)  # (n,)
        return pixels[:, None, None, None].expand(n, m["channels"], m["height"], m["width"])


class Unflagged(Shade):  # learns p(x | label), says it does not
    conditional = False


class Boastful(Shade):  # says it samples by class, never learns labels
    learns_labels = False


class Deaf(Shade):  # sets num_classes, then ignores the labels it is given
    uses_labels = False


class Plain(Shade):  # neither: honest
    conditional = learns_labels = uses_labels = False


def check(family: type[Family], classes: list[str] | None = None) -> None:
    class Suite(FamilyTests):
        info = DataInfo("image", {"channels": 1, "height": 4, "width": 4}, classes)

    Suite.family = family
    Suite().test_conditional_flag_tells_the_truth()


@pytest.mark.parametrize("classes", [None, ["a", "b"]])
def test_the_suite_passes_honest_families(classes):
    check(Shade, classes)
    check(Plain, classes)


@pytest.mark.parametrize("family, complaint", [
    (Unflagged, "learns p\\(x \\| label\\) \\(num_classes = 3\\) but declares conditional = "
                "False"),
    (Boastful, "declares conditional = True but learns nothing of the labels"),
    (Deaf, "other label: the same samples"),
])
def test_the_suite_catches_a_flag_that_lies(family, complaint):
    with pytest.raises((AssertionError, pytest.fail.Exception), match=complaint):
        check(family)
