"""pythae's VAE with its default MLP networks and trainer on images, writing samples along
the way (runs in the pythae venv: benchmarks/requirements-pythae.txt).

    python pythae_peer.py DIR --epochs 100 --n 2000   # DIR/train.npz: x [N, 1, 28, 28] in [0, 1]

Defaults throughout: VAEConfig (latent 10, MSE reconstruction; no encoder or decoder given,
so pythae builds Encoder_VAE_MLP / Decoder_AE_MLP), BaseTrainerConfig (100 epochs, Adam 1e-4,
batch 64). No eval set is given, so pythae keeps the model of the lowest training loss, and
the points are drawn from the training model at the end of an epoch (an on_epoch_end
callback), from the prior with pythae's NormalSampler, the RNG streams put back afterwards.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

start = time.monotonic()  # before the imports: loading torch and pythae counts too

import numpy as np  # noqa: E402
import torch  # noqa: E402
from points import Points, same_rng  # noqa: E402
from pythae.models import VAE, VAEConfig  # noqa: E402
from pythae.pipelines import TrainingPipeline  # noqa: E402
from pythae.samplers import NormalSampler  # noqa: E402
from pythae.trainers import BaseTrainerConfig  # noqa: E402
from pythae.trainers.training_callbacks import TrainingCallback  # noqa: E402


class Sampler(TrainingCallback):
    def __init__(self, points: Points, n: int) -> None:
        self.points, self.n, self.epoch = points, n, 0

    def on_epoch_end(self, training_config, **kwargs) -> None:
        self.epoch += 1
        if self.points.due(self.epoch):
            self.points.write(self.epoch, lambda stem: self.save(kwargs["model"], stem))

    def save(self, model, stem: Path) -> Path:
        with same_rng(), torch.no_grad():
            x = NormalSampler(model).sample(num_samples=self.n, batch_size=500)
        model.train()  # the sampler leaves the model in eval mode
        np.savez(stem.with_suffix(".npz"), x=x.cpu().numpy().astype(np.float32))
        return stem.with_suffix(".npz")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("dir", type=Path)
    p.add_argument("--epochs", type=int, default=BaseTrainerConfig().num_epochs)
    p.add_argument("--n", type=int, required=True)
    args = p.parse_args()
    torch.set_num_threads(1)
    points = Points(args.dir / "pythae", start, epochs=args.epochs)
    x = np.load(args.dir / "train.npz")["x"]  # (N, 1, 28, 28)
    model = VAE(model_config=VAEConfig(input_dim=tuple(x.shape[1:])))
    config = BaseTrainerConfig(output_dir=str(args.dir / "pythae" / "trainer"),
                               num_epochs=args.epochs)
    TrainingPipeline(model=model, training_config=config)(
        train_data=x, callbacks=[Sampler(points, args.n)])


if __name__ == "__main__":
    sys.exit(main())
