"""gpu-check step 1: which torch a Python has and which GPUs that torch can use.

The driver runs this with every candidate Python it finds (GPU_CHECK_PYTHON, python3, conda's,
/usr/bin's, ...) to pick the one whose torch sees a GPU, so the probe must run on whatever
Python 3 is lying around and fail quietly: standard library only, no newer syntax, and a torch
that does not import is reported, not raised.

Usage:
    python torch_info.py                 one JSON line: the Python, its torch, CUDA, the GPUs
    python torch_info.py fields JSON     two lines for the build: torch's CUDA version ("" for a
                                         CPU-only torch) and the GPUs' capabilities ("8.0;9.0")
    python torch_info.py describe JSON   the same for a person: torch, each GPU, torch's archs
"""
import json
import sys


def probe():
    info = {"executable": sys.executable, "python": sys.version.split()[0],
            "in_venv": sys.prefix != sys.base_prefix}
    try:
        import torch
    except Exception as exc:
        info["error"] = f"{type(exc).__name__}: {exc}"
        return info
    info.update(torch=torch.__version__, torch_file=torch.__file__, cuda=torch.version.cuda,
                available=torch.cuda.is_available(), devices=[])
    if info["available"]:
        for i in range(torch.cuda.device_count()):
            p = torch.cuda.get_device_properties(i)
            info["devices"].append({"name": p.name, "capability": f"{p.major}.{p.minor}",
                                    "memory_gib": round(p.total_memory / 2**30, 1),
                                    "sms": p.multi_processor_count})
        info["torch_arch_list"] = torch.cuda.get_arch_list()
    return info


def fields(info):
    print(info["cuda"] or "")
    print(";".join(sorted({d["capability"] for d in info["devices"]}, key=float)))


def describe(info):
    print(f"torch {info['torch']} (CUDA {info['cuda']}), Python {info['python']}, "
          f"in a venv: {info['in_venv']}")
    for n, d in enumerate(info["devices"]):
        sm = d["capability"].replace(".", "")
        print(f"cuda:{n} {d['name']}: sm_{sm}, {d['memory_gib']} GiB, {d['sms']} SMs")
    print("torch built for:", " ".join(info.get("torch_arch_list", [])) or "-")


if __name__ == "__main__":
    if len(sys.argv) == 1:
        print(json.dumps(probe()))
    else:
        {"fields": fields, "describe": describe}[sys.argv[1]](json.loads(sys.argv[2]))
