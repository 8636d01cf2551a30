"""The diffusion family's training options and sampler settings."""

from __future__ import annotations

from dataclasses import dataclass

from plugkit.families import image_nets
from plugkit.families.unet import GROUPS
from plugkit.options import option


@dataclass
class Options:
    timesteps: int = option(0, "diffusion steps T, in training and in sampling; 0: the "
                            "modality's (tables, images: 100; sequences: 1000, which sampling "
                            "walks in 100 steps)", min=0, max=4000)
    hidden: int = option(256, "tables, sequences: width of the denoiser", min=8)
    layers: int = option(3, "tables, sequences: hidden layers of the denoiser", min=1, max=16)
    dropout: float = option(0.0, "dropout in the denoiser", min=0.0, max=0.9)
    lr: float = option(0.0, "AdamW learning rate; 0: the modality's (tables, sequences: 1e-3; "
                       "images: 2e-3)", min=0.0, max=1.0)
    weight_decay: float = option(1e-5, "AdamW weight decay", min=0.0)
    # 16: on a CPU, twice the images a second that 32 train, and in the same 15 minutes the
    # better mnist-5k (docs/results.md); on a GPU, more may pay
    channels: int = option(16, "images: the UNet's channels at full resolution (twice that "
                           f"at 1/2 and 1/4), a multiple of {GROUPS}", min=GROUPS, max=1024)
    cond_drop: float = option(0.1, "images with labels: how often training drops the label, "
                              "teaching the unconditional model that guidance needs", min=0.0,
                              max=1.0)
    conditional: bool = image_nets.conditional_option()
    level: bool = option(True, "sequences: diffuse a window as its mean and its shape about "
                         "the mean, the shape scaled to the data's typical spread (a trend's "
                         "windows: the steps of a shape stay above the finest noise)",
                         absent=False)
    snr_gamma: float = option(5.0, "images: training draws step t in proportion to "
                              "min(SNR_t, gamma) / SNR_t (Min-SNR weighting), fewer of the "
                              "nearly clean steps; 0: every step equally often", min=0.0,
                              absent=0.0)
    prior: str = option("marginal", "tables: what noise turns a category (or a numeric "
                        "column's mode) into, and where sampling starts: 'marginal', the "
                        "column's own shares (D3PM's marginal transition: at the last step "
                        "every column already has its real shares); 'uniform', every "
                        "category alike (TabDDPM)", choices=("marginal", "uniform"),
                        absent="uniform")
    ema: float = option(0.999, "decay of the moving average of the denoiser's weights that "
                        "samples (0: the trained weights themselves)", min=0.0, max=0.9999)
    calibrate: bool = option(True, "tables, with `ema`: an offset per category added to the "
                             "averaged denoiser's logits of x_0, fitted while training to the "
                             "rows it noises, so its predictions keep the data's shares "
                             "(averaging weights sharpens them)", absent=False)

    def __post_init__(self) -> None:
        if self.timesteps == 1:
            raise ValueError("timesteps must be 0 (the modality's) or at least 2, got 1")
        if self.channels % GROUPS:
            raise ValueError(f"channels must be a multiple of {GROUPS} (GroupNorm's groups), "
                             f"got {self.channels}")


@dataclass
class Settings:
    where: str = option("", "tables: every row holds VALUE in the categorical COLUMN "
                        "(COLUMN=VALUE), drawn so by the model, not filtered")
    steps: int = option(0, "denoising steps when sampling, spaced over the T trained (fewer: "
                        "faster): evenly for tables and images, closer at low noise for "
                        "sequences; 0: all T for tables and images, 100 for sequences", min=0)
    guidance: float = option(0.0, "images drawn for labels: classifier-free guidance weight w, "
                             "eps = (1 + w) eps(x, label) - w eps(x); 0: none (one net "
                             "evaluation per step, not two)", min=0.0)
