"""diffusion_noise, diffusion_loss, ddim_step: math against float64, the keyed noise stream (one
process or many), gradients, opcheck, torch.compile and bad inputs, on every backend."""

import pytest
import torch
from helpers import NEEDS_NATIVE, assert_ran, rel_err, run_recorded, tolerance
from scipy import stats

from plugkit.families.diffusion import steps as family
from plugkit.ops import ddim_step, diffusion, diffusion_loss, diffusion_noise, draw_key, use_backend

SHAPES = [(7,), (5, 13), (2, 3, 33), (4, 1500), (3, 1, 28, 28)]
CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


def leaf(*shape, dtype=torch.float32, device="cpu", scale=1.0):
    return (scale * torch.randn(*shape, dtype=torch.float64)).to(device, dtype).requires_grad_()


def as64(t):
    return t.detach().double().requires_grad_()


def schedule(rows, dtype=torch.float64, device="cpu"):
    """abar per row in [0, 1], the ends included."""
    abar = torch.rand(rows, dtype=torch.float64)
    abar[:2] = torch.tensor([0.0, 1.0])[: min(rows, 2)]
    return abar.to(device, dtype)


def noise_ref(x0, abar, eps):
    a = abar.double().view(-1, *([1] * (x0.dim() - 1)))
    return a.sqrt() * x0 + (1 - a).sqrt() * eps.double()


def ddim_ref(x_t, eps, abar_t, abar_s, clip):
    """DDIM in float64, written as the family writes it: x0, clamped, the noise taken again."""
    abar_t, abar_s = float(abar_t), float(abar_s)
    x_t, eps = x_t.double(), eps.double()
    x0 = (x_t - (1 - abar_t) ** 0.5 * eps) / abar_t**0.5
    if clip is not None:
        x0 = x0.clamp(-clip, clip)
        eps = (x_t - abar_t**0.5 * x0) / (1 - abar_t) ** 0.5
    return abar_s**0.5 * x0 + (1 - abar_s) ** 0.5 * eps


def drawn_eps(shape, key, row_start=0):
    """The keyed noise itself: x_t = eps where x0 = 0 and abar = 0."""
    return diffusion_noise(torch.zeros(shape), torch.zeros(shape[0]), key=key, row_start=row_start)


# --- diffusion_noise -----------------------------------------------------------------------------


@pytest.mark.parametrize("abar_dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", SHAPES)
def test_noise_matches_float64_reference_with_given_eps(backend, device, dtype, abar_dtype, shape):
    x0, eps = leaf(*shape, dtype=dtype, device=device), leaf(*shape, dtype=dtype, device=device)
    abar = schedule(shape[0], abar_dtype, device)
    x_t, names = run_recorded(lambda: diffusion_noise(x0, abar, eps=eps))
    assert_ran(backend, names, "diffusion_noise")
    assert x_t.shape == shape and x_t.dtype == dtype and x_t.is_contiguous()
    x64, e64 = as64(x0), as64(eps)
    want = noise_ref(x64, abar, e64)
    assert rel_err(x_t, want) < tolerance(dtype)
    grad = torch.randn(shape, dtype=torch.float64)
    got = torch.autograd.grad((x_t * grad.to(device, dtype)).sum(), (x0, eps))
    for g, w in zip(got, torch.autograd.grad((want * grad).sum(), (x64, e64)), strict=True):
        assert g.dtype == dtype and rel_err(g, w) < tolerance(dtype)


@pytest.mark.parametrize("width", [1, 2, 3, 37, 1025])  # rows inside one Philox block; > kSpan
def test_rows_draw_their_global_numbers_whatever_the_split(backend, width):
    """A process holding rows [a, b) of a global batch draws, at row_start=a, exactly the numbers
    one process draws for those rows: what makes training independent of the process count."""
    key = draw_key("cpu")
    x0, abar = torch.randn(11, width), schedule(11)
    whole = diffusion_noise(x0, abar, key=key)
    for a, b in [(0, 4), (4, 5), (5, 11), (3, 10)]:
        part = diffusion_noise(x0[a:b], abar[a:b], key=key, row_start=a)
        assert torch.equal(part, whole[a:b]), (a, b)
    pred = torch.randn(11, width)
    halves = [diffusion_loss(pred[a:b], key=key, row_start=a) * (b - a) / 11
              for a, b in [(0, 6), (6, 11)]]
    assert rel_err(sum(halves), diffusion_loss(pred, key=key)) < 1e-6


def test_drawn_noise_is_the_fallback_stream(backend):
    key = torch.tensor([0x123456789ABCDEF, (1 << 32) - 7])  # the counter carries into its high word
    for shape, row_start in [((3, 37), 0), ((5, 7), 3), ((2, 1500), 1), ((9,), 5)]:
        got = drawn_eps(shape, key, row_start)
        want = diffusion.normals(shape, key, torch.float64, row_start)
        assert rel_err(got, want) < 1e-6, (shape, row_start)


def test_noise_is_standard_normal(backend):
    eps = drawn_eps((256, 1024), draw_key("cpu")).flatten().double()
    assert abs(eps.mean().item()) < 0.005 and abs(eps.var().item() - 1) < 0.01
    assert stats.kstest(eps[:100_000].numpy(), "norm").pvalue > 1e-3
    pairs = eps.view(-1, 4)  # the two outputs of one Box-Muller pair, and of one block
    assert abs(torch.corrcoef(pairs.T)[0, 1].item()) < 0.01
    assert abs(torch.corrcoef(pairs.T)[0, 2].item()) < 0.01


def test_noise_reproducible_fresh_and_generator_driven(backend):
    x0, abar = torch.randn(6, 5), schedule(6)
    torch.manual_seed(5)
    a = diffusion_noise(x0, abar)
    torch.manual_seed(5)
    assert torch.equal(a, diffusion_noise(x0, abar))
    assert not torch.equal(a, diffusion_noise(x0, abar))  # the generator moved on
    g1, g2 = torch.Generator().manual_seed(9), torch.Generator().manual_seed(9)
    assert torch.equal(diffusion_noise(x0, abar, generator=g1),
                       diffusion_noise(x0, abar, generator=g2))
    key = draw_key("cpu", torch.Generator().manual_seed(9))
    assert torch.equal(diffusion_noise(x0, abar, key=key), diffusion_noise(x0, abar, key=key))


@NEEDS_NATIVE
def test_backends_draw_the_same_numbers():
    key, pred = draw_key("cpu"), torch.randn(3, 37)
    results = []
    for name in ("native", "torch"):
        with use_backend(name):
            results.append((drawn_eps((3, 37), key, row_start=2),
                            diffusion_loss(pred, key=key, row_start=2)))
    (eps_n, loss_n), (eps_t, loss_t) = results
    assert rel_err(eps_n, eps_t) < 1e-6 and rel_err(loss_n, loss_t) < 1e-6


@NEEDS_NATIVE
def test_the_stream_is_reparameterize_s():
    """One stream for every op: diffusion_noise at row_start=0 draws reparameterize's eps."""
    key, zeros = draw_key("cpu"), torch.zeros(5, 37)
    z, _ = torch.ops.plugkit.reparameterize_kl(zeros, zeros, None, key)  # z = eps
    with use_backend("native"):
        assert torch.equal(drawn_eps((5, 37), key), z)


# --- diffusion_loss ------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", SHAPES)
def test_loss_matches_float64_reference_with_given_eps(backend, device, dtype, shape):
    pred, eps = leaf(*shape, dtype=dtype, device=device), leaf(*shape, dtype=dtype, device=device)
    loss, names = run_recorded(lambda: diffusion_loss(pred, eps=eps))
    assert_ran(backend, names, "diffusion_loss")
    assert loss.shape == () and loss.dtype == dtype
    p64, e64 = as64(pred), as64(eps)
    want = ((p64 - e64) ** 2).mean()
    assert rel_err(loss, want) < tolerance(dtype)
    got = torch.autograd.grad(3 * loss, (pred, eps))
    for g, w in zip(got, torch.autograd.grad(3 * want, (p64, e64)), strict=True):
        assert g.dtype == dtype and rel_err(g, w) < tolerance(dtype)


@pytest.mark.parametrize("row_start", [0, 3])
def test_loss_draws_the_noise_of_the_key_again(backend, row_start):
    key = draw_key("cpu")
    pred = leaf(4, 2, 9, dtype=torch.float64)
    eps = drawn_eps((4, 2, 9), key, row_start).double()
    loss, names = run_recorded(lambda: diffusion_loss(pred, key=key, row_start=row_start))
    assert_ran(backend, names, "diffusion_loss")
    p64 = as64(pred)
    want = ((p64 - eps) ** 2).mean()
    assert rel_err(loss, want) < 1e-6  # eps was drawn in float32 above, in float64 here
    (got,), (expected,) = torch.autograd.grad(loss, (pred,)), torch.autograd.grad(want, (p64,))
    assert rel_err(got, expected) < 1e-5


def test_a_training_step_keeps_no_noise_tensor(backend):
    """The point of the key: autograd saves abar, the key and pred, never a tensor of noise."""
    if backend != "native":
        pytest.skip("the fallback is plain PyTorch: its graph saves pred - eps")
    x0, abar, w = torch.randn(8, 100), schedule(8), torch.randn(100, requires_grad=True)
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        key = draw_key("cpu")
        x_t = diffusion_noise(x0, abar, key=key)
        pred = x_t * w  # the "network": saves x_t and w, as any first layer saves its input
        loss = diffusion_loss(pred, key=key)
    loss.backward()
    network = {x_t.data_ptr(), w.data_ptr(), pred.data_ptr()}
    ours = [t for t in saved if t.data_ptr() not in network]
    assert ours and all(t.numel() <= 8 for t in ours), [tuple(t.shape) for t in ours]


def test_loss_is_bit_identical_across_runs_and_thread_counts(backend):
    key, pred = draw_key("cpu"), torch.randn(1 << 20) * 3
    first = diffusion_loss(pred, key=key)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        single = diffusion_loss(pred, key=key)
    finally:
        torch.set_num_threads(threads)
    assert first.item() == diffusion_loss(pred, key=key).item()
    if backend == "native":  # the native reduction order does not depend on the thread count
        assert first.item() == single.item()


# --- ddim_step -----------------------------------------------------------------------------------

STEPS = [(0.05, 0.3), (0.9999, 1.0), (0.5, 0.0), (0.3, 0.2)]  # the last one noises


@pytest.mark.parametrize("clip", [None, 1.0, 3.0])
@pytest.mark.parametrize("abar_t,abar_s", STEPS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_ddim_matches_float64_reference(backend, device, dtype, abar_t, abar_s, clip):
    x_t = leaf(6, 3, 17, dtype=dtype, device=device, scale=1.5)
    eps = leaf(6, 3, 17, dtype=dtype, device=device)
    x_s, names = run_recorded(lambda: ddim_step(x_t, eps, abar_t, abar_s, clip=clip))
    assert_ran(backend, names, "ddim_step")
    assert x_s.shape == x_t.shape and x_s.dtype == dtype
    x64, e64 = as64(x_t), as64(eps)
    want = ddim_ref(x64, e64, abar_t, abar_s, clip)
    # the clipped path takes the noise again through 1 / sqrt(1 - abar_t): its rounding grows
    scale = 1 if clip is None else (1 - abar_t) ** -0.5
    assert rel_err(x_s, want) < tolerance(dtype) * scale
    grad = torch.randn_like(want)
    got = torch.autograd.grad((x_s * grad.to(device, dtype)).sum(), (x_t, eps))
    for g, w in zip(got, torch.autograd.grad((want * grad).sum(), (x64, e64)), strict=True):
        assert rel_err(g, w) < tolerance(dtype) * scale


def test_ddim_takes_the_schedule_as_tensors(backend):
    abar = family.cosine_schedule(100)  # float64, as the family keeps it
    x_t, eps = torch.randn(4, 1, 8, 8, dtype=torch.float64), torch.randn(4, 1, 8, 8,
                                                                         dtype=torch.float64)
    for t, s in [(100, 95), (50, 49), (1, 0)]:
        want = ddim_ref(x_t, eps, abar[t], abar[s], 1.0)  # the family's step: clip = 1
        got = ddim_step(x_t, eps, abar[t], abar[s], clip=1.0)
        assert rel_err(got, want) < 1e-10, (t, s)
        assert torch.equal(got, ddim_step(x_t, eps, float(abar[t]), float(abar[s]), clip=1.0))
    x32 = x_t.float()
    assert rel_err(ddim_step(x32, eps.float(), abar[50].float(), abar[49]),
                   ddim_ref(x_t, eps, abar[50], abar[49], None)) < 1e-5


# --- every op: gradcheck, opcheck, compile, layouts, empty tensors --------------------------------


def test_gradcheck(backend):
    x0, eps = leaf(3, 5, dtype=torch.float64), leaf(3, 5, dtype=torch.float64)
    abar = schedule(3)
    key = draw_key("cpu")
    assert torch.autograd.gradcheck(lambda x, e: diffusion_noise(x, abar, eps=e), (x0, eps))
    assert torch.autograd.gradcheck(lambda x: diffusion_noise(x, abar, key=key, row_start=2),
                                    (x0,))
    assert torch.autograd.gradcheck(lambda p, e: diffusion_loss(p, eps=e), (x0, eps))
    assert torch.autograd.gradcheck(lambda p: diffusion_loss(p, key=key, row_start=1), (x0,))
    assert torch.autograd.gradcheck(lambda x, e: ddim_step(x, e, 0.3, 0.6), (x0, eps))
    # clipped: values away from the bounds, where the step is differentiable
    x_t = torch.tensor([[0.1, 3.0, -3.0, 0.4]], dtype=torch.float64, requires_grad=True)
    e = torch.tensor([[0.2, -0.1, 0.3, 5.0]], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, e: ddim_step(x, e, 0.3, 0.6, clip=1.0), (x_t, e))


def test_opcheck(backend):
    if backend != "native":
        pytest.skip("opcheck applies to the registered native operators")
    ops = torch.ops.plugkit
    x0, abar, key = leaf(4, 6), schedule(4), draw_key("cpu")
    torch.library.opcheck(ops.diffusion_noise.default, (x0, abar, leaf(4, 6), None, 0))
    torch.library.opcheck(ops.diffusion_noise.default, (x0, abar.float(), None, key, 3))
    # transposed inputs: the fake impls must promise the contiguous outputs the kernels return
    torch.library.opcheck(ops.diffusion_noise.default, (leaf(6, 4).t(), abar, None, key, 0))
    torch.library.opcheck(ops.diffusion_loss.default, (x0, leaf(4, 6), None, 0))
    torch.library.opcheck(ops.diffusion_loss.default, (leaf(6, 4).t(), None, key, 2))
    for clip in (None, 1.0):
        torch.library.opcheck(ops.ddim_step.default,
                              (leaf(6, 4).t(), leaf(4, 6), torch.tensor(0.3, dtype=torch.float64),
                               torch.tensor(0.6), clip))
    torch.library.opcheck(ops.diffusion_noise_backward.default, (torch.randn(4, 6), abar))
    torch.library.opcheck(ops.diffusion_loss_backward.default,
                          (torch.tensor(2.0), torch.randn(4, 6), None, key, 1))


def test_compile_fullgraph(backend):
    abar_table = family.cosine_schedule(50)

    def train_loss(x0, w, t):
        key = draw_key(x0.device)
        x_t = diffusion_noise(x0, abar_table[t], key=key, row_start=2)
        return diffusion_loss(x_t * w, key=key, row_start=2)

    x0, w = torch.randn(8, 6, 3).transpose(1, 2), leaf(6)  # a transposed x0 checks the fakes
    t = torch.randint(1, 51, (8,))
    compiled = torch.compile(train_loss, fullgraph=True)
    torch.manual_seed(3)
    expected = train_loss(x0, w, t)
    (g_expected,) = torch.autograd.grad(expected, (w,))
    torch.manual_seed(3)
    got = compiled(x0, w, t)
    (g_got,) = torch.autograd.grad(got, (w,))
    assert rel_err(got, expected) < 1e-5 and rel_err(g_got, g_expected) < 1e-5

    def sample(x, eps):
        for t, s in [(50, 30), (30, 10), (10, 0)]:
            x = ddim_step(x, eps, abar_table[t], abar_table[s], clip=1.0)
        return x

    x, eps = torch.randn(4, 10), torch.randn(4, 10)
    assert rel_err(torch.compile(sample, fullgraph=True)(x, eps), sample(x, eps)) < 1e-6


def test_non_contiguous_inputs(backend):
    x0, eps = leaf(20, 9).t(), leaf(9, 40)[:, ::2]
    abar = schedule(18)[::2]  # 9 rows, strided
    assert rel_err(diffusion_noise(x0, abar, eps=eps), noise_ref(x0.detach(), abar, eps)) < 1e-6
    assert rel_err(diffusion_loss(x0, eps=eps), ((x0 - eps) ** 2).mean()) < 1e-6
    assert rel_err(ddim_step(x0, eps, 0.4, 0.7, clip=1.0),
                   ddim_ref(x0.detach(), eps.detach(), 0.4, 0.7, 1.0)) < 1e-5
    key = draw_key("cpu")
    assert torch.equal(diffusion_noise(x0, abar, key=key),
                       diffusion_noise(x0.contiguous(), abar, key=key))


@pytest.mark.parametrize("shape", [(0, 4), (4, 0), (0,), (2, 0, 3)])
def test_empty_tensors(backend, shape):
    x0 = leaf(*shape)
    x_t = diffusion_noise(x0, schedule(shape[0]) if shape[0] else torch.zeros(0))
    assert x_t.shape == shape
    x_t.sum().backward()
    assert x0.grad.shape == shape
    assert ddim_step(x0, torch.zeros(shape), 0.5, 0.7, clip=1.0).shape == shape
    with pytest.raises(ValueError, match="pred is empty"):
        diffusion_loss(x0, key=draw_key("cpu"))


# --- bad inputs: one clear error naming the argument ----------------------------------------------

KEY = torch.tensor([1, 2])
OK = torch.ones(3, 4)
ABAR = torch.full((3,), 0.5)


@pytest.mark.parametrize(
    "call,error,message",
    [
        (lambda: diffusion_noise(torch.ones(3, 4, dtype=torch.int32), ABAR), ValueError,
         "x0 must be float32/float64 on cpu, got torch.int32"),
        (lambda: diffusion_noise(torch.tensor(1.0), ABAR), ValueError, "x0 must have shape"),
        (lambda: diffusion_noise(OK, torch.full((4,), 0.5)), ValueError,
         r"abar has shape \(4,\) but x0 has 3 rows"),
        (lambda: diffusion_noise(OK, torch.full((3,), 1, dtype=torch.int64)), ValueError,
         "abar must be float32/float64, got torch.int64"),
        (lambda: diffusion_noise(OK, torch.full((3,), 0.5, device="meta")), ValueError,
         "abar is on meta but x0 is on cpu"),
        (lambda: diffusion_noise(OK, [0.5] * 3), TypeError, "abar must be a torch.Tensor"),
        (lambda: diffusion_noise(OK, ABAR.clone().requires_grad_()), ValueError,
         "abar requires grad"),
        (lambda: diffusion_noise(OK, ABAR, eps=torch.ones(3, 5)), ValueError,
         r"eps has shape \(3, 5\) but x0 has shape \(3, 4\)"),
        (lambda: diffusion_noise(OK, ABAR, eps=OK, key=KEY), ValueError, "give eps, or a key"),
        (lambda: diffusion_noise(OK, ABAR, key=KEY, generator=torch.Generator()), ValueError,
         "give key or generator, not both"),
        (lambda: diffusion_noise(OK, ABAR, key=torch.tensor([1.0, 2.0])), ValueError,
         "key must be an int64 tensor"),
        (lambda: diffusion_noise(OK, ABAR, key=(1, 2)), TypeError, "key must be a torch.Tensor"),
        (lambda: diffusion_noise(OK, ABAR, row_start=-1), ValueError, "row_start must be >= 0"),
        (lambda: diffusion_noise(OK, ABAR, row_start=1.0), TypeError, "row_start must be an int"),
        (lambda: diffusion_loss(OK), ValueError, "give exactly one of key"),
        (lambda: diffusion_loss(OK, key=KEY, eps=OK), ValueError, "give exactly one of key"),
        (lambda: diffusion_loss(torch.ones(3, dtype=torch.float16), key=KEY), ValueError,
         "pred must be float32/float64 on cpu, got torch.float16"),
        (lambda: diffusion_loss(OK, eps=OK.double()), ValueError,
         "eps has dtype torch.float64 but pred has torch.float32"),
        (lambda: diffusion_loss(OK, key=KEY.to("meta")), ValueError,
         "key is on meta but pred is on cpu"),
        (lambda: ddim_step(OK, torch.ones(4, 3), 0.5, 0.6), ValueError,
         r"eps has shape \(4, 3\) but x_t has shape \(3, 4\)"),
        (lambda: ddim_step(OK, OK, 1.0, 0.6), ValueError, r"abar_t must be in \(0, 1\), got 1.0"),
        (lambda: ddim_step(OK, OK, 0.5, 1.5), ValueError, r"abar_s must be in \[0, 1\], got 1.5"),
        (lambda: ddim_step(OK, OK, torch.full((3,), 0.5), 0.6), ValueError,
         "abar_t must be a 0-D tensor"),
        (lambda: ddim_step(OK, OK, 0.5, torch.tensor(1)), ValueError,
         "abar_s must be float32/float64, got torch.int64"),
        (lambda: ddim_step(OK, OK, 0.5, "0.6"), TypeError, "abar_s must be a float or a 0-D"),
        (lambda: ddim_step(OK, OK, 0.5, 0.6, clip=0.0), ValueError, "clip must be > 0"),
        (lambda: ddim_step(OK, OK, 0.5, 0.6, clip="1"), TypeError, "clip must be a float"),
    ],
)
def test_bad_inputs_raise_clear_errors(backend, call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_native_ops_check_their_arguments_too(backend):
    if backend != "native":
        pytest.skip("direct calls of the registered operators")
    ops = torch.ops.plugkit
    with pytest.raises(ValueError, match="give exactly one of eps and key"):
        ops.diffusion_noise(OK, ABAR, None, None, 0)
    with pytest.raises(ValueError, match="give exactly one of eps and key"):
        ops.diffusion_loss(OK, OK, KEY, 0)
    with pytest.raises(ValueError, match="key must be an int64 tensor"):
        ops.diffusion_noise(OK, ABAR, None, torch.zeros(3), 0)
    with pytest.raises(ValueError, match="abar has shape"):
        ops.diffusion_noise(OK, torch.ones(2), None, KEY, 0)
    with pytest.raises(ValueError, match="row_start must be >= 0"):
        ops.diffusion_loss(OK, None, KEY, -2)
    with pytest.raises(ValueError, match="passes 2"):
        ops.diffusion_noise(OK, ABAR, None, KEY, 1 << 61)
    with pytest.raises(ValueError, match="abar_t must be in"):
        ops.ddim_step(OK, OK, torch.tensor(0.0), torch.tensor(0.5), None)
    with pytest.raises(ValueError, match="abar_t must be a 0-D tensor"):
        ops.ddim_step(OK, OK, torch.ones(1), torch.tensor(0.5), None)
    with pytest.raises(ValueError, match="grad must be a single"):
        ops.diffusion_loss_backward(torch.ones(2), OK, None, KEY, 0)
    with pytest.raises(ValueError, match="abar has shape"):
        ops.diffusion_noise_backward(OK, torch.ones(4))


# --- CUDA kernels (skipped without a GPU) ---------------------------------------------------------


@pytest.mark.cuda
@CUDA
@NEEDS_NATIVE
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
# odd widths straddle Philox blocks; 600k rows of one element loop the capped grid
@pytest.mark.parametrize("shape,row_start", [((3, 37), 0), ((5, 301), 7), ((600_000, 1), 3),
                                             ((4, 1, 28, 28), 2)])
def test_cuda_draws_the_cpu_numbers(dtype, shape, row_start):
    key = torch.tensor([0x123456789ABCDEF, (1 << 32) - 7])
    ops = torch.ops.plugkit
    x0, abar = torch.randn(shape, dtype=dtype), schedule(shape[0])
    pred = torch.randn(shape, dtype=dtype)
    cpu = (ops.diffusion_noise(x0, abar, None, key, row_start),
           ops.diffusion_loss(pred, None, key, row_start),
           ops.diffusion_loss_backward(torch.tensor(3.0, dtype=dtype), pred, None, key, row_start),
           ops.diffusion_noise_backward(x0, abar))
    gpu = (ops.diffusion_noise(x0.cuda(), abar.cuda(), None, key.cuda(), row_start),
           ops.diffusion_loss(pred.cuda(), None, key.cuda(), row_start),
           ops.diffusion_loss_backward(torch.tensor(3.0, dtype=dtype, device="cuda"), pred.cuda(),
                                       None, key.cuda(), row_start),
           ops.diffusion_noise_backward(x0.cuda(), abar.cuda()))
    for name, c, g in zip(("x_t", "loss", "dpred", "dx0"), cpu, gpu, strict=True):
        assert rel_err(g, c) < max(1e-6, tolerance(dtype)), name
    for clip in (None, 1.0):
        args = (torch.tensor(0.3, dtype=torch.float64), torch.tensor(0.7, dtype=torch.float64))
        want = ops.ddim_step(x0, pred, *args, clip)
        got = ops.ddim_step(x0.cuda(), pred.cuda(), *(a.cuda() for a in args), clip)
        assert rel_err(got, want) < 10 * tolerance(dtype)


@pytest.mark.cuda
@CUDA
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_cuda_half_storage(backend, dtype):
    x0, eps = leaf(6, 200, dtype=dtype, device="cuda"), leaf(6, 200, dtype=dtype, device="cuda")
    abar = schedule(6, device="cuda")
    x_t = diffusion_noise(x0, abar, eps=eps)
    loss = diffusion_loss(x_t, eps=eps)
    x_s = ddim_step(x_t, eps, abar[3], abar[4], clip=1.0)
    assert x_t.dtype == loss.dtype == x_s.dtype == dtype
    e64 = eps.detach().double()
    assert rel_err(x_t, noise_ref(x0.detach().double(), abar, e64)) < tolerance(dtype)
    # the loss and its gradient from the x_t the op returned (rounded to dtype)
    residual = x_t.detach().double() - e64
    assert rel_err(loss, (residual**2).mean()) < tolerance(dtype)
    (g,) = torch.autograd.grad(loss, (x0,))
    want = abar.sqrt()[:, None] * 2 * residual / residual.numel()
    assert g.dtype == dtype and rel_err(g, want) < 2 * tolerance(dtype)
    key = draw_key("cuda")
    drawn = diffusion_noise(torch.zeros(4, 33, dtype=dtype, device="cuda"),
                            torch.zeros(4, device="cuda"), key=key)
    assert rel_err(drawn, diffusion.normals((4, 33), key, torch.float32)) < tolerance(dtype)
