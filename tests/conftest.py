import os

import pytest
import torch

# Bit-exact comparisons (resume, data-parallel) need a fixed thread count: the automatic choice
# may change it mid-run. tests/test_threads.py sets PLUGKIT_THREADS=auto where it tests that.
os.environ.setdefault("PLUGKIT_THREADS", "1")

import plugkit.ops

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")


@pytest.fixture(params=["native", "torch"])
def backend(request):
    """Runs the test once per backend, with that backend selected."""
    if request.param == "native" and plugkit.ops.backend().choice == "torch":
        pytest.skip("PLUGKIT_BACKEND=torch: the fallback only")
    if request.param == "native" and not plugkit.ops.backend().native_loaded:
        pytest.skip(f"native core not loaded: {plugkit.ops.backend().reason}")
    with plugkit.ops.use_backend(request.param):
        yield request.param


@pytest.fixture(params=["cpu", pytest.param("cuda", marks=CUDA)])
def device(request):
    return torch.device(request.param)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(autouse=True, scope="session")
def _private_cache(tmp_path_factory):
    """The eval feature nets are cached per test session, never in the user's ~/.cache."""
    import os

    before = os.environ.get("PLUGKIT_CACHE")
    os.environ["PLUGKIT_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    yield
    if before is None:
        os.environ.pop("PLUGKIT_CACHE")
    else:
        os.environ["PLUGKIT_CACHE"] = before


@pytest.fixture
def one_thread():
    """OpenMP and BLAS thread pools crawl on a shared 2-core machine (HGB: 20x slower)."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        yield
