"""GAN losses: every backend against a float64 reference of docs/operators.md."""

import pytest
import torch
from helpers import assert_ran, rel_err, run_recorded, tolerance

from plugkit.ops import gan_d_loss, gan_g_loss

CASES = [("bce", 0.0), ("bce", 0.1), ("hinge", 0.0), ("wasserstein", 0.0)]


def softplus64(x):
    return torch.logaddexp(x, torch.zeros_like(x))  # exact in float64, any magnitude


def reference_d(r, f, kind, s):
    if kind == "bce":
        return ((1 - s) * softplus64(-r) + s * softplus64(r)).mean() + softplus64(f).mean()
    if kind == "hinge":
        return torch.relu(1 - r).mean() + torch.relu(1 + f).mean()
    return f.mean() - r.mean()


def reference_g(f, kind):
    return softplus64(-f).mean() if kind == "bce" else -f.mean()


def logits(*shape, dtype=torch.float32, device="cpu", scale=3.0):
    return (scale * torch.randn(*shape, dtype=torch.float64)).to(device, dtype).requires_grad_()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("kind,smoothing", CASES)
def test_matches_float64_reference(backend, device, dtype, kind, smoothing):
    r, f = logits(97, 3, dtype=dtype, device=device), logits(1000, dtype=dtype, device=device)
    (d, g), names = run_recorded(
        lambda: (gan_d_loss(r, f, kind=kind, label_smoothing=smoothing), gan_g_loss(f, kind=kind))
    )
    assert_ran(backend, names, "gan_d_loss")
    assert_ran(backend, names, "gan_g_loss")
    assert d.dtype == dtype and d.shape == ()
    r64, f64 = r.detach().double().requires_grad_(), f.detach().double().requires_grad_()
    d_ref, g_ref = reference_d(r64, f64, kind, smoothing), reference_g(f64, kind)
    assert rel_err(d, d_ref) < tolerance(dtype)
    assert rel_err(g, g_ref) < tolerance(dtype)
    grads = torch.autograd.grad(d + 0.5 * g, (r, f))
    grads_ref = torch.autograd.grad(d_ref + 0.5 * g_ref, (r64, f64))
    for got, want in zip(grads, grads_ref, strict=True):
        assert got.dtype == dtype
        assert rel_err(got, want) < tolerance(dtype)


@pytest.mark.parametrize("kind,smoothing", CASES)
def test_gradcheck(backend, kind, smoothing):
    r, f = logits(6, 2, dtype=torch.float64), logits(5, dtype=torch.float64)
    assert torch.autograd.gradcheck(
        lambda r, f: gan_d_loss(r, f, kind=kind, label_smoothing=smoothing), (r, f)
    )
    assert torch.autograd.gradcheck(lambda f: gan_g_loss(f, kind=kind), (f,))


@pytest.mark.parametrize("kind,smoothing", CASES)
def test_opcheck(backend, kind, smoothing):
    if backend != "native":
        pytest.skip("opcheck applies to the registered native operators")
    r, f = logits(8, 3), logits(11)
    torch.library.opcheck(torch.ops.plugkit.gan_d_loss.default, (r, f, kind, smoothing))
    torch.library.opcheck(torch.ops.plugkit.gan_g_loss.default, (f, kind))
    # transposed logits: the backward's fake impl must promise contiguous gradients
    torch.library.opcheck(torch.ops.plugkit.gan_d_loss.default, (logits(3, 8).t(), f, kind,
                                                                 smoothing))


def test_compile_fullgraph(backend):
    def step(r, f):
        return gan_d_loss(r, f, label_smoothing=0.1) + gan_g_loss(f, kind="hinge")

    r, f = logits(8, 8).t(), logits(32)  # transposed: checks the backward fake's strides
    compiled = torch.compile(step, fullgraph=True)
    expected, got = step(r, f), compiled(r, f)
    assert rel_err(got, expected) < 1e-6
    (g_expected,), (g_got,) = torch.autograd.grad(expected, (f,)), torch.autograd.grad(got, (f,))
    assert rel_err(g_got, g_expected) < 1e-6


def test_bit_identical_across_runs_and_thread_counts(backend):
    r, f = logits(1 << 20, scale=5.0), logits(1 << 19, scale=5.0)
    first = gan_d_loss(r, f, label_smoothing=0.1)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        single = gan_d_loss(r, f, label_smoothing=0.1)
    finally:
        torch.set_num_threads(threads)
    again = gan_d_loss(r, f, label_smoothing=0.1)
    assert first.item() == again.item()
    if backend == "native":  # the native reduction order does not depend on the thread count
        assert first.item() == single.item()


@pytest.mark.parametrize("kind", ["bce", "hinge", "wasserstein"])
def test_extreme_logits_stay_finite(backend, kind):
    r = torch.tensor([1e4, -1e4, 0.0, 30.0, -30.0], requires_grad=True)
    f = torch.tensor([-1e4, 1e4, 0.0, 88.0, -88.0], requires_grad=True)
    d, g = gan_d_loss(r, f, kind=kind), gan_g_loss(f, kind=kind)
    grads = torch.autograd.grad(d + g, (r, f))
    r64, f64 = r.detach().double().requires_grad_(), f.detach().double().requires_grad_()
    d_ref, g_ref = reference_d(r64, f64, kind, 0.0), reference_g(f64, kind)
    assert rel_err(d, d_ref) < 1e-6 and rel_err(g, g_ref) < 1e-6
    for got, want in zip(grads, torch.autograd.grad(d_ref + g_ref, (r64, f64)), strict=True):
        assert torch.isfinite(got).all() and rel_err(got, want) < 1e-6


def test_non_contiguous_inputs(backend):
    base = logits(40, 30)
    r, f = base.t(), base[::3, ::2]
    assert not r.is_contiguous() and not f.is_contiguous()
    expected = reference_d(r.detach().double(), f.detach().double(), "bce", 0.0)
    assert rel_err(gan_d_loss(r, f), expected) < 1e-5


@pytest.mark.parametrize(
    "call,error,message",
    [
        (lambda: gan_d_loss(torch.ones(0), torch.ones(3)), ValueError, "real_logits is empty"),
        (lambda: gan_g_loss(torch.ones(2, 0)), ValueError, "fake_logits is empty"),
        (lambda: gan_d_loss(torch.ones(3, dtype=torch.int64), torch.ones(3)), ValueError,
         "real_logits must be float32/float64 on cpu, got torch.int64"),
        (lambda: gan_d_loss(torch.ones(3), torch.ones(3, dtype=torch.float64)), ValueError,
         "fake_logits has dtype torch.float64 but real_logits has torch.float32"),
        (lambda: gan_d_loss(torch.ones(3), torch.ones(3, device="meta")), ValueError,
         "fake_logits is on meta but real_logits is on cpu"),
        (lambda: gan_d_loss(torch.ones(3), torch.ones(3), kind="lsgan"), ValueError,
         "kind must be one of bce, hinge, wasserstein, got 'lsgan'"),
        (lambda: gan_d_loss(torch.ones(3), torch.ones(3), label_smoothing=1.0), ValueError,
         r"label_smoothing must be in \[0, 1\), got 1.0"),
        (lambda: gan_d_loss(torch.ones(3), torch.ones(3), kind="hinge", label_smoothing=0.1),
         ValueError, "label_smoothing applies only to kind='bce'"),
        (lambda: gan_g_loss([1.0, 2.0]), TypeError, "fake_logits must be a torch.Tensor"),
        (lambda: gan_g_loss(torch.ones(3).to_sparse()), ValueError,
         "fake_logits must be a dense"),
    ],
)
def test_bad_inputs_raise_clear_errors(backend, call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_native_op_checks_its_arguments_too(backend):
    if backend != "native":
        pytest.skip("direct calls of the registered operator")
    with pytest.raises(ValueError, match="fake_logits is empty"):
        torch.ops.plugkit.gan_d_loss(torch.ones(2), torch.ones(0), "bce", 0.0)
    with pytest.raises(ValueError, match="kind must be 'bce', 'hinge' or 'wasserstein'"):
        torch.ops.plugkit.gan_g_loss(torch.ones(2), "nope")


# --- CUDA kernels (skipped without a GPU) ------------------------------------------------------

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


@pytest.fixture
def native(backend):
    if backend != "native":
        pytest.skip("checks the CUDA kernels")


@pytest.mark.cuda
@CUDA
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("kind,smoothing", CASES)
def test_cuda_half_storage(native, dtype, kind, smoothing):
    r, f = logits(97, 3, dtype=dtype, device="cuda"), logits(1000, dtype=dtype, device="cuda")
    d, g = gan_d_loss(r, f, kind=kind, label_smoothing=smoothing), gan_g_loss(f, kind=kind)
    grads = torch.autograd.grad(d + 0.5 * g, (r, f))
    r64, f64 = r.detach().double().requires_grad_(), f.detach().double().requires_grad_()
    d_ref, g_ref = reference_d(r64, f64, kind, smoothing), reference_g(f64, kind)
    assert d.dtype == g.dtype == dtype
    assert rel_err(d, d_ref) < tolerance(dtype) and rel_err(g, g_ref) < tolerance(dtype)
    for got, want in zip(grads, torch.autograd.grad(d_ref + 0.5 * g_ref, (r64, f64)), strict=True):
        assert got.dtype == dtype and rel_err(got, want) < tolerance(dtype)


@pytest.mark.cuda
@CUDA
def test_cuda_large_inputs_grid_stride_and_deterministic(native):
    # 3 * 2^20 + 5 logits: more than 1024 partial blocks' worth, so each thread loops
    r, f = logits(3 << 20 | 5, device="cuda"), logits(1 << 18, device="cuda")
    first, again = gan_d_loss(r, f, label_smoothing=0.1), gan_d_loss(r, f, label_smoothing=0.1)
    (grad,) = torch.autograd.grad(first, (r,))
    assert first.item() == again.item()
    r64, f64 = r.detach().double().requires_grad_(), f.detach().double()
    expected = reference_d(r64, f64, "bce", 0.1)
    assert rel_err(first, expected) < 1e-5
    assert rel_err(grad, torch.autograd.grad(expected, (r64,))[0]) < 1e-5


@pytest.mark.cuda
@CUDA
def test_cuda_backward_op_checks_the_loss_gradient(native):
    f = torch.ones(4, device="cuda")
    for bad in (torch.ones(0, device="cuda"), torch.ones((), device="cuda", dtype=torch.float64),
                torch.ones(())):
        with pytest.raises(ValueError, match="grad must be a single"):
            torch.ops.plugkit.gan_g_loss_backward(bad, f, "bce")
        with pytest.raises(ValueError, match="grad must be a single"):
            torch.ops.plugkit.gan_d_loss_backward(bad, f, f, "bce", 0.0)
