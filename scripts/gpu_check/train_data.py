"""gpu-check step 8: the small data sets the training steps use in place of downloads.

names: 1,500 made-up names from 20 syllables, a text for the lstm (any text file would do; this
       one needs nothing and is the same on every machine).
images: 1,500 random 8x8 binary images in 10 classes (the density grows with the label), for vae
        and gan when scikit-learn, which ships the `digits` data set, is missing.

Usage: python train_data.py names OUT.txt | images OUT.npz
"""
import sys


def names(out):
    import random

    rng = random.Random(0)
    syllables = "ka ri mo na lu te si ra po vi an el or is um be da go ne li".split()
    made_up = ["".join(rng.choice(syllables) for _ in range(rng.randint(1, 4)))
               for _ in range(1500)]
    open(out, "w").write("\n".join(made_up) + "\n")


def images(out):
    import numpy as np

    rng = np.random.default_rng(0)
    y = rng.integers(0, 10, 1500)
    x = (rng.random((1500, 8, 8)) < (0.2 + 0.06 * y[:, None, None])).astype(np.float32)
    np.savez(out, x=x, y=y)


if __name__ == "__main__":
    {"names": names, "images": images}[sys.argv[1]](sys.argv[2])
