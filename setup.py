"""Builds plugkit's native core, ``plugkit._C`` (everything else is in pyproject.toml).

Environment switches (all optional):

  PLUGKIT_NATIVE=auto|1|0     auto: build, and if that fails install anyway (the pure-PyTorch
                              fallback is used); 1: a failed build fails the install; 0: skip.
  PLUGKIT_CUDA=auto|1|0       auto: compile the CUDA kernels when nvcc and a CUDA build of torch
                              are present; 1: require them; 0: CPU kernels only.
  PLUGKIT_CPU_CAPABILITY=auto|AVX512|AVX2|DEFAULT
                              SIMD level of the CPU kernels (auto: what this machine's torch
                              reports). The loader refuses a build the running CPU cannot execute.
  TORCH_CUDA_ARCH_LIST        GPU architectures (default "8.0;9.0+PTX": A100, H100/H200, PTX for
                              newer cards). Without it torch compiles for every architecture it
                              knows, which is slow on small machines.

Install with ``pip install --no-build-isolation -e .`` so the extension compiles against the torch
you run (see README): an isolated build may pick another torch and fail at import.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import sys

from setuptools import setup

HERE = os.path.dirname(os.path.abspath(__file__))
CPU_FLAGS = {
    "AVX512": ["-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512dq", "-mfma", "-mf16c"],
    "AVX2": ["-mavx2", "-mfma", "-mf16c"],
    "DEFAULT": [],
}


def _switch(name: str, default: str = "auto") -> str:
    value = os.environ.get(name, default).strip().lower()
    if value not in ("auto", "1", "0"):
        sys.exit(f"{name} must be auto, 1 or 0, not {value!r}")
    return value


def _log(message: str) -> None:
    print(f"[plugkit setup] {message}", file=sys.stderr)


def _locate_cuda_home() -> None:
    # torch guesses CUDA_HOME from `which nvcc`; a wrapper script in /usr/local/bin makes that
    # /usr/local, and linking then fails on -lcudart. Prefer the toolkit's real location.
    if os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH"):
        return
    if os.path.exists("/usr/local/cuda/bin/nvcc"):
        os.environ["CUDA_HOME"] = "/usr/local/cuda"


def _cpu_capability() -> str:
    wanted = os.environ.get("PLUGKIT_CPU_CAPABILITY", "auto").upper()
    if wanted == "AUTO":
        import torch

        wanted = torch.backends.cpu.get_cpu_capability()
        if wanted.startswith("AVX512"):
            wanted = "AVX512"
    if wanted not in CPU_FLAGS:
        wanted = "DEFAULT"
    return wanted


def _extension_setup() -> dict:
    native = _switch("PLUGKIT_NATIVE")
    if native == "0":
        _log("PLUGKIT_NATIVE=0: skipping the native extension; the PyTorch fallback will be used")
        return {}
    _locate_cuda_home()
    try:
        import torch
        from torch.utils import cpp_extension
    except ImportError as exc:
        if native == "1":
            raise
        _log(f"torch is not importable ({exc}); skipping the native extension")
        return {}

    cuda = _switch("PLUGKIT_CUDA")
    has_nvcc = cpp_extension.CUDA_HOME is not None and shutil.which(
        os.path.join(cpp_extension.CUDA_HOME, "bin", "nvcc")
    )
    with_cuda = cuda != "0" and torch.version.cuda is not None and bool(has_nvcc)
    if cuda == "1" and not with_cuda:
        sys.exit("PLUGKIT_CUDA=1 but nvcc or a CUDA build of torch is missing")
    os.environ.setdefault("TORCH_CUDA_ARCH_LIST", "8.0;9.0+PTX")

    capability = _cpu_capability()
    sources = sorted(glob.glob("csrc/*.cpp") + glob.glob("csrc/cpu/*.cpp"))
    defines = [f'-DPLUGKIT_CPU_CAPABILITY_NAME="{capability}"']
    if with_cuda:
        sources += sorted(glob.glob("csrc/cuda/*.cu"))
        defines.append("-DPLUGKIT_WITH_CUDA")
    simd = [f"-DCPU_CAPABILITY={capability}", f"-DCPU_CAPABILITY_{capability}"]
    cxx = ["-O3", "-fopenmp", *defines, *(simd if capability != "DEFAULT" else []),
           *CPU_FLAGS[capability]]
    nvcc = ["-O3", "--expt-relaxed-constexpr", *defines]
    make = cpp_extension.CUDAExtension if with_cuda else cpp_extension.CppExtension
    ext = make(
        name="plugkit._C",
        sources=sources,
        include_dirs=[os.path.join(HERE, "csrc")],
        extra_compile_args={"cxx": cxx, "nvcc": nvcc} if with_cuda else cxx,
        extra_link_args=["-fopenmp"],
    )
    info = {
        "cpu_capability": capability,
        "cuda_compiled": with_cuda,
        "cuda_arch_list": os.environ["TORCH_CUDA_ARCH_LIST"] if with_cuda else None,
        "torch": torch.__version__,
    }
    _log(f"building plugkit._C: {info}")

    class BuildExt(cpp_extension.BuildExtension):
        """Writes the build facts next to the extension; tolerates failure unless required."""

        def run(self):
            try:
                super().run()
            except Exception as exc:  # a missing compiler must not break the install
                if native == "1":
                    raise
                _log(f"native build failed ({exc}); plugkit will use the PyTorch fallback")
                return
            out_dir = os.path.dirname(self.get_ext_fullpath("plugkit._C"))
            os.makedirs(out_dir, exist_ok=True)
            with open(os.path.join(out_dir, "_build_info.json"), "w") as f:
                json.dump(info, f)

    return {"ext_modules": [ext], "cmdclass": {"build_ext": BuildExt.with_options(use_ninja=True)}}


setup(**_extension_setup())
