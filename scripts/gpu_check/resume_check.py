"""gpu-check step 9: after the GPU-written vae run (epochs 1-3) is resumed on the CPU for epoch 4,
its record must hold exactly one metrics row per epoch: a resume that repeats or drops an epoch,
or cannot read a checkpoint written on the GPU, shows here.

Usage: python resume_check.py RUN_DIR
"""
import json
import pathlib
import sys

run = pathlib.Path(sys.argv[1])
epochs = [json.loads(line)["epoch"] for line in (run / "metrics.jsonl").read_text().splitlines()
          if line.strip()]
record = json.loads((run / "run.json").read_text())
print("metrics.jsonl epochs:", epochs, "| run.json status:", record.get("status"))
if epochs != [1, 2, 3, 4]:
    sys.exit("expected exactly one metrics row for each of epochs 1-4")
