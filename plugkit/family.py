"""What a model family is: the contract every plugin implements (docs/plugins.md).

A family is one class, published under the entry-point group `plugkit.models`:

    [project.entry-points."plugkit.models"]
    markov = "plugkit_markov:Markov"

It declares itself with class attributes (name, description, modalities, conditional,
likelihood, api_version, Options, Settings, default_dataset) and owns its networks, losses, one
training step and its sampler; the core owns data, devices, seeds, the loop, checkpoints,
logging, and turning data into batches and samples into data (plugkit.formats).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:  # keep `import plugkit.family` free of torch (plugkit --help, plugkit list)
    import torch

# 2: text samples are tokens like text batches (1: list[str]); sampler settings are a typed
# Settings dataclass passed as `settings` (1: free keywords); the formats moved from
# plugkit.data to plugkit.formats
API_VERSION = 2
MODALITIES = ("image", "table", "text", "sequence")


@dataclass
class NoOptions:
    """A family without options."""


@dataclass
class NoSettings:
    """A family whose sampler takes no settings."""


@dataclass(frozen=True)
class DataInfo:
    """What a family knows of its data when it builds itself (also stored in run.json)."""

    modality: str
    meta: dict = field(default_factory=dict)  # image: channels, height, width; text: vocab ...
    classes: list[str] | None = None  # class names when the data has labels
    # trained with DP-SGD (plugkit.privacy): each row's loss must come from that row alone,
    # every row of the batch once (no resampling within the batch, nothing mixing rows)
    private: bool = False


@dataclass
class Batch:
    """One training batch, on the family's device.

    x: image float32 [B, C, H, W] in [0, 1]; sequence float32 [B, T, F] standardized per
       feature (plugkit.formats.sequence); table float32 [B, D] encoded rows
       (plugkit.formats.tabular: spans(meta["encoding"]) gives the layout); text int64 [B, L]
       tokens (plugkit.formats.text): characters 1..V (index in meta["vocab"] + 1), 0 = end
       of line, then padding. plugkit.formats.codec encodes and decodes all four.
    y: int64 [B] class labels, or None when the data has none.
    start, total: where these rows sit in the global batch of a multi-process step (one
       process: 0 and B), for randn.
    """

    x: torch.Tensor
    y: torch.Tensor | None = None
    start: int = 0
    total: int | None = None

    def randn(self, *shape: int) -> torch.Tensor:
        """Standard normal noise [B, *shape] for this batch's rows. It is drawn for the whole
        global batch from the global RNG (which the core seeds and checkpoints) and sliced, so
        every sample gets the same numbers whatever the number of processes: use it for per-row
        noise in train_step."""
        import torch

        return self._rows(torch.randn, shape)

    def rand(self, *shape: int) -> torch.Tensor:
        """Uniform noise in [0, 1) [B, *shape] for this batch's rows, drawn like `randn` (the
        same numbers whatever the number of processes): diffusion timesteps, dropout masks."""
        import torch

        return self._rows(torch.rand, shape)

    def sum_over_processes(self, t: torch.Tensor) -> torch.Tensor:
        """t, a sum over this batch's rows, summed over the processes of a multi-process step
        (one process: t itself), so that a statistic a family keeps of its training data (a
        running mean, as BatchNorm's) is what one process computes from the global batch."""
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            t = t.clone()
            dist.all_reduce(t)
        return t

    def _rows(self, draw, shape: tuple[int, ...]) -> torch.Tensor:
        total = self.total if self.total is not None else len(self.x)
        return draw(total, *shape, device=self.x.device)[self.start:self.start + len(self.x)]


class Family:
    """Base class of every model family: declare the class attributes, implement the methods."""

    name: ClassVar[str]
    description: ClassVar[str]  # one line, shown by `plugkit list`
    modalities: ClassVar[tuple[str, ...]]  # a subset of MODALITIES
    # can it sample given a label (images: it sets num_classes) or a category (tables: the
    # `where` setting)? `plugkit list` shows it; plugkit.testing checks it
    conditional: ClassVar[bool] = False
    likelihood: ClassVar[bool] = False  # is val_loss a negative log-likelihood (plugkit eval)?
    # lower val_loss = better model (best weights, early stopping); False when it measures
    # something else (a GAN's discriminator). An instance may set its own in __init__ when
    # that depends on the data (the VAE's ELBO does not rank its image samples).
    val_loss_ranks_models: bool = True
    # the modalities it trains with DP-SGD (plugkit train --dp-epsilon; docs/privacy.md): its
    # networks' layers have per-sample gradients in Opacus (or a `per_sample_grads` of their
    # own), and with DataInfo.private each row's loss comes from that row alone
    private: ClassVar[tuple[str, ...]] = ()
    # option values a private run takes where the user gives none (a GAN's pac: 1, since
    # DP-SGD clips per row and a pack of rows would be one row to it)
    private_options: ClassVar[dict[str, Any]] = {}
    # option values by the data's modality where the user gives none, recorded in run.json
    # like any option: what trains best there, measured (the vae's beta on images)
    modality_options: ClassVar[dict[str, dict[str, Any]]] = {}
    # under --dp-epsilon it spends the budget itself, through `self.ledger` (a
    # plugkit.privacy.Ledger the core sets before training: its own mechanisms on the records,
    # e.g. noisy marginals), not by DP-SGD; `private` lists its modalities all the same
    private_mechanism: ClassVar[bool] = False
    # train_step gets every training row in one batch: an epoch is one step (--batch-size
    # does not apply), in one process; for a model fitted to the whole data (marginals)
    whole_batch: ClassVar[bool] = False
    default_epochs: ClassVar[int] = 10  # epochs when the user gives none
    # rows a step when the user gives no --batch-size, by modality (64 for any other): what
    # trains best per second (diffusion, tables: 256); cut on small data so that an epoch
    # keeps several steps (plugkit.training._batch_size)
    batch_sizes: ClassVar[dict[str, int]] = {}
    api_version: ClassVar[int] = API_VERSION  # the plugin API it was written for
    Options: ClassVar[type] = NoOptions  # a dataclass: typed fields, defaults, help in metadata
    # the sampler's settings, a dataclass like Options (`plugkit sample -s key=value`; the
    # CLI's --temperature, --top-k, --prefix and --where set the fields of those names)
    Settings: ClassVar[type] = NoSettings
    default_dataset: ClassVar[str | None] = None  # what `plugkit train NAME` uses without --data
    # Set in __init__ to len(info.classes) when the model learns p(x | label): the core then
    # passes `labels` [n] (int64, 0..num_classes-1) to every sample() call.
    num_classes: int = 0
    # a private_mechanism family's budget under --dp-epsilon (plugkit.privacy.Ledger), set by
    # the core after __init__; None otherwise
    ledger: Any = None

    def __init__(self, options: Any, info: DataInfo, device: torch.device) -> None:
        """Build the networks and optimizers for data described by `info`, on `device`."""
        self.options, self.info, self.device = options, info, device

    def modules(self) -> dict[str, torch.nn.Module]:
        """Every network with weights, by name: what checkpoints save and DDP wraps."""
        raise NotImplementedError

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """Every optimizer, by name: checkpoints save their state for exact resume."""
        raise NotImplementedError

    def private_parts(self) -> tuple[dict[str, torch.nn.Module],
                                     dict[str, torch.optim.Optimizer]]:
        """Under DP-SGD, the networks whose gradients read training records and their
        optimizers, by name: what Opacus clips and noises. Every one by default; a GAN's
        generator learns from its discriminator's outputs alone (post-processing), so it keeps
        a plain optimizer."""
        return self.modules(), self.optimizers()

    def train_step(self, batch: Batch) -> dict[str, float]:
        """One optimization step on `batch`; returns the losses to log, by name."""
        raise NotImplementedError

    def finished(self) -> bool:
        """True when training has nothing left to do (its budget spent, its fit done): the
        run ends after this epoch, before its planned epochs."""
        return False

    def validated(self, improved: bool) -> None:
        """Called after each epoch's validation, when it ranks models (val_loss_ranks_models,
        no DP): whether the epoch set a new lowest validation loss. A family may lower its
        learning rate when it did not (what it changes in an optimizer, the checkpoint keeps)."""

    def val_loss(self, batch: Batch) -> float | tuple[float, int]:
        """A loss on held-out data, comparable from epoch to epoch: the mean per sample, or a
        (sum, count) pair when the natural unit is not the sample (characters of text), so the
        core weights every unit equally across batches."""
        raise NotImplementedError

    def sample(self, n: int, *, generator: torch.Generator, labels: torch.Tensor | None = None,
               settings: Any = None) -> torch.Tensor:
        """n new samples in Batch.x's representation: images float [n, C, H, W] in [0, 1];
        tables encoded rows [n, D], categorical spans as one-hot or logits; sequences
        standardized [n, T, F]; text int64 tokens [n, L], each row ending at its first 0. The
        core decodes them to the data's own format (plugkit.formats.codec). Draw every random
        number from `generator`. `labels` [n]: the class of each sample, given when
        num_classes > 0. `settings`: an instance of Settings, validated (a direct call without
        it means Settings())."""
        raise NotImplementedError


def contract_errors(cls: object) -> list[str]:
    """Why `cls` is not a usable family (empty when it is)."""
    if not (isinstance(cls, type) and issubclass(cls, Family)):
        return [f"{cls!r} is not a subclass of plugkit.family.Family"]
    errors = []
    if cls.api_version != API_VERSION:
        errors.append(f"targets plugin API {cls.api_version}, this plugkit speaks {API_VERSION}"
                      " (docs/plugins.md, 'API versions', says what changed)")
    for attr in ("Options", "Settings"):
        if not dataclasses.is_dataclass(getattr(cls, attr, None)):
            errors.append(f"its {attr} is not a dataclass")
    for attr in ("name", "description", "modalities"):
        if not getattr(cls, attr, None):
            errors.append(f"declares no {attr}")
    if cls.whole_batch and cls.private and not cls.private_mechanism:
        errors.append("declares whole_batch and private without private_mechanism: DP-SGD's "
                      "accounting needs Poisson batches, not the whole data at every step")
    unknown = set(getattr(cls, "modalities", ())) - set(MODALITIES)
    if unknown:
        errors.append(f"unknown modalities {sorted(unknown)} (known: {', '.join(MODALITIES)})")
    return errors
