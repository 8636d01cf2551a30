"""gpu-check step 5: the native build's record against the GPUs present.

Kernels compiled for another architecture than the GPU's fail only when first launched (or are
JIT-compiled from PTX, slowly), so the check compares the arch list plugkit was built with
(plugkit/_build_info.json) with each GPU's capability, and fails on a GPU the build left out.

Usage: python build_arch.py cuda|cpu   (cpu: print the build info only)
"""
import json
import pathlib
import sys

import torch

import plugkit

info_path = pathlib.Path(plugkit.__file__).parent / "_build_info.json"
info = json.loads(info_path.read_text()) if info_path.exists() else None
print("build info:", info)
print("torch", torch.__version__, "CUDA", torch.version.cuda,
      "arch list", torch.cuda.get_arch_list())
if sys.argv[1] == "cuda":
    arch_list = ((info or {}).get("cuda_arch_list") or "").replace(" ", ";").split(";")
    built = [a.split("+")[0] for a in arch_list if a]
    for i in range(torch.cuda.device_count()):
        cap = "{}.{}".format(*torch.cuda.get_device_capability(i))
        print(f"cuda:{i} {torch.cuda.get_device_name(i)} sm_{cap.replace('.', '')}:",
              "kernels built for it" if cap in built else f"NOT in the build's arch list {built}")
        if cap not in built:
            sys.exit(1)
