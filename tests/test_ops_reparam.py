"""reparameterize / reparameterize_kl: math against float64, the Philox stream, and the RNG."""

import pytest
import torch
from helpers import NEEDS_NATIVE, assert_ran, rel_err, run_recorded, tolerance
from scipy import stats

from plugkit.ops import reparam, reparameterize, reparameterize_kl, use_backend

# Random123's published known-answer vectors for philox4x32_10: (counter, key, output).
PHILOX_KAT = [
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    (
        (0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344),
        (0xA4093822, 0x299F31D0),
        (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1),
    ),
]


def reference(mu, logvar, eps):
    mu, logvar, eps = mu.double(), logvar.double(), eps.double()
    z = mu + torch.exp(0.5 * logvar) * eps
    return z, 0.5 * (torch.exp(logvar) + mu**2 - 1 - logvar).sum(-1)


def leaf(*shape, dtype=torch.float32, device="cpu", scale=1.0):
    return (scale * torch.randn(*shape, dtype=torch.float64)).to(device, dtype).requires_grad_()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", [(7,), (5, 13), (2, 3, 33), (4, 1500)])
def test_matches_float64_reference_with_given_eps(backend, device, dtype, shape):
    mu, logvar = leaf(*shape, dtype=dtype, device=device), leaf(*shape, dtype=dtype, device=device)
    eps = torch.randn(shape, dtype=dtype, device=device)
    (z, kl), names = run_recorded(lambda: reparameterize_kl(mu, logvar, eps=eps))
    assert_ran(backend, names, "reparameterize_kl")
    assert z.shape == shape and kl.shape == shape[:-1] and z.dtype == kl.dtype == dtype
    mu64, lv64 = mu.detach().double().requires_grad_(), logvar.detach().double().requires_grad_()
    z_ref, kl_ref = reference(mu64, lv64, eps)
    assert rel_err(z, z_ref) < tolerance(dtype) and rel_err(kl, kl_ref) < tolerance(dtype)
    dz, dkl = torch.randn_like(z_ref), torch.randn_like(kl_ref)
    grads = torch.autograd.grad((z * dz.to(dtype)).sum() + (kl * dkl.to(dtype)).sum(), (mu, logvar))
    grads_ref = torch.autograd.grad((z_ref * dz).sum() + (kl_ref * dkl).sum(), (mu64, lv64))
    for got, want in zip(grads, grads_ref, strict=True):
        assert rel_err(got, want) < tolerance(dtype)


def test_extreme_logvar_gradients(backend):
    # exp(+-25) spans 1e-11..7e10: compared by norm with a floor, not element by element
    logvar = torch.tensor([[50.0, -50.0, 0.0, 20.0, -20.0, 1.0]], requires_grad=True)
    mu = torch.randn(1, 6, requires_grad=True)
    eps = torch.randn(1, 6)
    z, kl = reparameterize_kl(mu, logvar, eps=eps)
    mu64, lv64 = mu.detach().double().requires_grad_(), logvar.detach().double().requires_grad_()
    z_ref, kl_ref = reference(mu64, lv64, eps)
    assert rel_err(z, z_ref) < 1e-5 and rel_err(kl, kl_ref) < 1e-5
    grads = torch.autograd.grad(z.sum() + kl.sum(), (mu, logvar))
    grads_ref = torch.autograd.grad(z_ref.sum() + kl_ref.sum(), (mu64, lv64))
    for got, want in zip(grads, grads_ref, strict=True):
        assert torch.isfinite(got).all() and rel_err(got, want, floor=1e-6) < 1e-5


def test_only_z_or_only_kl_used(backend):
    mu, logvar = leaf(3, 4), leaf(3, 4)
    z, kl = reparameterize_kl(mu, logvar, eps=torch.ones(3, 4))
    (g_kl,) = torch.autograd.grad(kl.sum(), (mu,), retain_graph=True)
    assert torch.allclose(g_kl, mu.detach())
    (g_z,) = torch.autograd.grad(z.sum(), (mu,))
    assert torch.allclose(g_z, torch.ones(3, 4))


def test_gradcheck(backend):
    mu, logvar = leaf(3, 5, dtype=torch.float64), leaf(3, 5, dtype=torch.float64)
    eps = torch.randn(3, 5, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda m, lv: reparameterize_kl(m, lv, eps=eps), (mu, logvar))
    key = reparam.draw_key(mu.device)  # the sampled path: fixed key, so the function is pure

    def sampled(m, lv):
        if backend == "native":
            return torch.ops.plugkit.reparameterize_kl(m, lv, None, key)
        return reparam.reference(m, lv, reparam.philox_normal(m.shape, key, m.dtype))

    assert torch.autograd.gradcheck(sampled, (mu, logvar))


def test_opcheck(backend):
    if backend != "native":
        pytest.skip("opcheck applies to the registered native operators")
    mu, logvar = leaf(4, 6), leaf(4, 6)
    op = torch.ops.plugkit.reparameterize_kl.default
    torch.library.opcheck(op, (mu, logvar, torch.randn(4, 6), None))
    torch.library.opcheck(op, (mu, logvar, None, reparam.draw_key(mu.device)))
    # transposed inputs: the fake impl must promise the contiguous outputs the kernels return
    torch.library.opcheck(op, (leaf(6, 4).t(), leaf(6, 4).t(), None, reparam.draw_key(mu.device)))
    torch.library.opcheck(torch.ops.plugkit.philox4x32.default,
                          (torch.arange(8).view(2, 4), torch.tensor([1, 2])))


def test_compile_fullgraph(backend):
    def loss(mu, logvar):
        z, kl = reparameterize_kl(mu, logvar)
        return (z**2).sum() + kl.sum()

    mu, logvar = leaf(16, 8).t(), leaf(8, 16)  # a transposed input checks the fake's strides
    compiled = torch.compile(loss, fullgraph=True)
    torch.manual_seed(3)
    expected = loss(mu, logvar)
    (g_expected,) = torch.autograd.grad(expected, (logvar,))
    torch.manual_seed(3)
    got = compiled(mu, logvar)
    (g_got,) = torch.autograd.grad(got, (logvar,))
    assert rel_err(got, expected) < 1e-5 and rel_err(g_got, g_expected) < 1e-5


def sampled_eps(shape, seed=None, generator=None):
    if seed is not None:
        torch.manual_seed(seed)
    zeros = torch.zeros(shape)
    return reparameterize(zeros, zeros, generator=generator)  # z = eps when mu = logvar = 0


def test_normals_are_standard_normal(backend):
    eps = sampled_eps((256, 1024), seed=1).flatten().double()
    assert abs(eps.mean().item()) < 0.005 and abs(eps.var().item() - 1) < 0.01
    assert stats.kstest(eps[:100_000].numpy(), "norm").pvalue > 1e-3
    # neighbours are independent: the two outputs of one Box-Muller pair, and of one block
    pairs = eps.view(-1, 4)
    assert abs(torch.corrcoef(pairs.T)[0, 1].item()) < 0.01
    assert abs(torch.corrcoef(pairs.T)[0, 2].item()) < 0.01


def test_reproducible_fresh_and_generator_driven(backend):
    a, b = sampled_eps((64, 8), seed=5), sampled_eps((64, 8), seed=5)
    assert torch.equal(a, b)
    assert not torch.equal(a, sampled_eps((64, 8)))  # the generator moved on: fresh numbers
    g1, g2 = torch.Generator().manual_seed(9), torch.Generator().manual_seed(9)
    assert torch.equal(sampled_eps((3, 5), generator=g1), sampled_eps((3, 5), generator=g2))


@NEEDS_NATIVE
def test_backends_draw_the_same_numbers():
    shape = (3, 37)  # odd sizes: rows straddle Philox blocks
    with use_backend("native"):
        native = sampled_eps(shape, seed=11)
    with use_backend("torch"):
        fallback = sampled_eps(shape, seed=11)
    assert rel_err(native, fallback) < 1e-6


@pytest.mark.parametrize("counter,key,expected", PHILOX_KAT)
def test_philox_known_answers_fallback(counter, key, expected):
    words = reparam.philox4x32_10([torch.tensor(c) for c in counter], *map(torch.tensor, key))
    assert tuple(int(w) for w in words) == expected


@NEEDS_NATIVE
@pytest.mark.parametrize("counter,key,expected", PHILOX_KAT)
def test_philox_known_answers_native(counter, key, expected):
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for dev in devices:
        out = torch.ops.plugkit.philox4x32(torch.tensor([counter], device=dev),
                                            torch.tensor(key, device=dev))
        assert tuple(out[0].tolist()) == expected, dev


@NEEDS_NATIVE
def test_philox_stream_matches_fallback_bit_for_bit():
    key = torch.tensor([0x123456789ABCDEF, (1 << 62) - 3])  # offset near the top: counter carry
    words = reparam.philox_uint32(16, key)
    block = key[1] + torch.arange(16)
    zero = torch.zeros(16, dtype=torch.int64)
    counters = torch.stack([block & 0xFFFFFFFF, (block >> 32) & 0xFFFFFFFF, zero, zero], 1)
    philox_key = torch.stack([key[0] & 0xFFFFFFFF, (key[0] >> 32) & 0xFFFFFFFF])
    native = torch.ops.plugkit.philox4x32(counters, philox_key)
    assert torch.equal(words, native)


@pytest.mark.parametrize("shape", [(0, 4), (4, 0), (0,), (2, 0, 3)])
def test_empty_tensors(backend, shape):
    mu, logvar = leaf(*shape), leaf(*shape)
    z, kl = reparameterize_kl(mu, logvar)
    assert z.shape == shape and kl.shape == shape[:-1]
    assert (kl == 0).all()
    (z.sum() + kl.sum()).backward()
    assert mu.grad.shape == shape


def test_non_contiguous_inputs(backend):
    mu, logvar = leaf(20, 9).t(), leaf(9, 40)[:, ::2]
    eps = torch.randn(20, 9).t()
    z, kl = reparameterize_kl(mu, logvar, eps=eps)
    z_ref, kl_ref = reference(mu.detach(), logvar.detach(), eps)
    assert rel_err(z, z_ref) < 1e-6 and rel_err(kl, kl_ref) < 1e-6


@pytest.mark.parametrize(
    "call,message",
    [
        (lambda: reparameterize(torch.ones(3, dtype=torch.int32), torch.ones(3)),
         "mu must be float32/float64 on cpu, got torch.int32"),
        (lambda: reparameterize(torch.ones(3, 4), torch.ones(3, 5)),
         r"logvar has shape \(3, 5\) but mu has shape \(3, 4\)"),
        (lambda: reparameterize(torch.ones(3), torch.ones(3, dtype=torch.float64)),
         "logvar has dtype torch.float64 but mu has torch.float32"),
        (lambda: reparameterize(torch.ones(3), torch.ones(3, device="meta")),
         "logvar is on meta but mu is on cpu"),
        (lambda: reparameterize(torch.tensor(1.0), torch.tensor(1.0)), "at least 1-D"),
        (lambda: reparameterize(torch.ones(2, 3), torch.ones(2, 3), eps=torch.ones(3)),
         r"eps has shape \(3\) but mu has shape \(2, 3\)"),
        (lambda: reparameterize(*torch.ones(2, 2, dtype=torch.float16)), "float16"),
    ],
)
def test_bad_inputs_raise_clear_errors(backend, call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_native_op_checks_eps_and_key(backend):
    if backend != "native":
        pytest.skip("direct calls of the registered operator")
    mu = torch.zeros(2, 3)
    with pytest.raises(ValueError, match="give exactly one of eps and key"):
        torch.ops.plugkit.reparameterize_kl(mu, mu, None, None)
    with pytest.raises(ValueError, match="key must be an int64 tensor"):
        torch.ops.plugkit.reparameterize_kl(mu, mu, None, torch.zeros(3))


# --- CUDA kernels (skipped without a GPU) ------------------------------------------------------

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


@pytest.mark.cuda
@CUDA
@NEEDS_NATIVE
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
# odd row lengths straddle Philox blocks; 301 > 128 makes each lane loop; 600k rows of one
# element exceed the capped grid's 2^19 warps, so warps loop over rows
@pytest.mark.parametrize("shape", [(3, 37), (5, 301), (600_000, 1)])
def test_cuda_draws_the_cpu_numbers(dtype, shape):
    key = torch.tensor([0x123456789ABCDEF, (1 << 32) - 7])  # the counter carries into its high word
    mu, logvar = torch.zeros(shape, dtype=dtype), torch.zeros(shape, dtype=dtype)
    logvar[..., ::2] = 0.5
    op = torch.ops.plugkit.reparameterize_kl
    z_cpu, kl_cpu = op(mu, logvar, None, key)
    z_cuda, kl_cuda = op(mu.cuda(), logvar.cuda(), None, key.cuda())
    assert rel_err(z_cuda, z_cpu) < 1e-6 and rel_err(kl_cuda, kl_cpu) < tolerance(dtype)
    expected = reparam.philox_normal(shape, key, dtype) * torch.exp(0.5 * logvar)
    assert rel_err(z_cuda, expected) < 1e-6


@pytest.mark.cuda
@CUDA
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_cuda_half_storage(backend, dtype):
    mu, logvar = leaf(6, 200, dtype=dtype, device="cuda"), leaf(6, 200, dtype=dtype, device="cuda")
    eps = torch.randn(6, 200, dtype=dtype, device="cuda")
    z, kl = reparameterize_kl(mu, logvar, eps=eps)
    assert z.dtype == kl.dtype == dtype
    mu64, lv64 = mu.detach().double().requires_grad_(), logvar.detach().double().requires_grad_()
    z_ref, kl_ref = reference(mu64, lv64, eps)
    assert rel_err(z, z_ref) < tolerance(dtype) and rel_err(kl, kl_ref) < tolerance(dtype)
    # sum() hands the backward expanded (stride-0) gradients
    grads = torch.autograd.grad(z.sum() + kl.sum(), (mu, logvar))
    grads_ref = torch.autograd.grad(z_ref.sum() + kl_ref.sum(), (mu64, lv64))
    for got, want in zip(grads, grads_ref, strict=True):
        assert got.dtype == dtype and rel_err(got, want) < tolerance(dtype)


@NEEDS_NATIVE
@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="no CUDA device on this machine"))])
@pytest.mark.parametrize("bad, message", [
    ({"grad_z": torch.zeros(3, 4)}, "grad_z has shape"),
    ({"grad_kl": torch.zeros(4)}, "grad_kl has shape"),
    ({"z": torch.zeros(5, 3)}, "z has shape"),
    ({"grad_z": torch.zeros(5, 4, dtype=torch.float64)}, "grad_z has dtype"),
])
def test_the_native_backward_checks_its_gradients(device, bad, message):
    """Autograd always passes matching gradients; a direct call with others is refused instead
    of reading out of bounds (or, on a GPU, a host pointer)."""
    args = {"grad_z": torch.zeros(5, 4), "grad_kl": torch.zeros(5), "mu": torch.zeros(5, 4),
            "logvar": torch.zeros(5, 4), "z": torch.zeros(5, 4)}
    args = {k: v.to(device) for k, v in (args | bad).items()}
    with pytest.raises(ValueError, match=message):
        torch.ops.plugkit.reparameterize_kl_backward(*args.values())
    if device == "cuda":  # a host tensor among device ones
        args = {k: torch.zeros_like(v) for k, v in args.items() if k != "grad_z"}
        with pytest.raises(ValueError, match="grad_z is on cpu"):
            torch.ops.plugkit.reparameterize_kl_backward(
                torch.zeros(5, 4), args["grad_kl"], args["mu"], args["logvar"], args["z"])
