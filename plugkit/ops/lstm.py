"""LSTM cell and single-layer LSTM (docs/operators.md), in torch.nn.LSTM's layout and gate order.

    i, f, o = sigmoid(gates_i, gates_f, gates_o),   g = tanh(gates_g)
    c = f * c_prev + i * g,                          h = o * tanh(c)

lstm_layer runs the whole sequence: gates_t = x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh. Its
weights are nn.LSTM's weight_ih_l0 [4H, I], weight_hh_l0 [4H, H], bias_ih_l0 and bias_hh_l0
[4H], so state dicts interchange. The initial states are [B, H] (one layer, one direction:
nn.LSTM's [1, B, H] with the leading 1 dropped).
"""

from __future__ import annotations

import torch

from plugkit.ops import _backend, _checks


def lstm_cell(gates: torch.Tensor, c_prev: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One LSTM step from pre-activations: gates [B, 4H] (i, f, g, o), c_prev [B, H] -> (h, c)."""
    _checks.floating(gates, "gates")
    _checks.ndim(gates, 2, "gates", "[B, 4H]")
    if gates.shape[1] % 4:
        raise ValueError(f"gates must be [B, 4H] (i, f, g, o), got width {gates.shape[1]}, "
                         "not a multiple of 4")
    _checks.like(c_prev, gates, "c_prev", "gates")
    _checks.shape(c_prev, (gates.shape[0], gates.shape[1] // 4), "c_prev", "[B, H]")
    if _backend.native_for(gates.device):
        h, c, _act = torch.ops.plugkit.lstm_cell(gates, c_prev)
        return h, c
    return cell_reference(gates, c_prev)


def lstm_layer(
    x: torch.Tensor,
    h0: torch.Tensor,
    c0: torch.Tensor,
    w_ih: torch.Tensor,
    w_hh: torch.Tensor,
    b_ih: torch.Tensor,
    b_hh: torch.Tensor,
) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
    """An LSTM over a sequence, like nn.LSTM(I, H) with batch_first=False.

    Args: x [T, B, I]; h0, c0 [B, H]; w_ih [4H, I]; w_hh [4H, H]; b_ih, b_hh [4H].
    Returns: (y, (h_n, c_n)) with y [T, B, H] the hidden state of every step, h_n, c_n [B, H].
    """
    _check_layer(x, h0, c0, w_ih, w_hh, b_ih, b_hh)
    if _backend.native_for(x.device):
        y, h_n, c_n, _act, _cs = torch.ops.plugkit.lstm_layer(x, h0, c0, w_ih, w_hh, b_ih, b_hh)
        return y, (h_n, c_n)
    return layer_reference(x, h0, c0, w_ih, w_hh, b_ih, b_hh)


def _check_layer(x, h0, c0, w_ih, w_hh, b_ih, b_hh) -> None:
    _checks.floating(x, "x")
    _checks.ndim(x, 3, "x", "[T, B, I]")
    _checks.like(w_hh, x, "w_hh", "x")
    _checks.ndim(w_hh, 2, "w_hh", "[4H, H]")
    hidden = w_hh.shape[1]
    _checks.shape(w_hh, (4 * hidden, hidden), "w_hh", "[4H, H]")
    _, batch, inputs = x.shape
    expected = {
        "w_ih": (w_ih, (4 * hidden, inputs), "[4H, I]"),
        "b_ih": (b_ih, (4 * hidden,), "[4H]"),
        "b_hh": (b_hh, (4 * hidden,), "[4H]"),
        "h0": (h0, (batch, hidden), "[B, H]"),
        "c0": (c0, (batch, hidden), "[B, H]"),
    }
    for name, (t, shape, layout) in expected.items():
        _checks.like(t, x, name, "x")
        _checks.shape(t, shape, name, layout)


# The pure-PyTorch fallback (and test oracle): differentiable, so autograd and torch.compile
# handle it as is.


def cell_reference(gates: torch.Tensor, c_prev: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """lstm_cell in plain torch ops; returns (h, c)."""
    i, f, g, o = gates.chunk(4, 1)  # [B, H] each
    c = torch.sigmoid(f) * c_prev + torch.sigmoid(i) * torch.tanh(g)
    h = torch.sigmoid(o) * torch.tanh(c)
    return h, c


def layer_reference(x, h0, c0, w_ih, w_hh, b_ih, b_hh):
    """lstm_layer as a loop over time; returns (y, (h_n, c_n)) like lstm_layer."""
    gates_x = torch.matmul(x, w_ih.t()) + (b_ih + b_hh)  # [T, B, 4H]: all input projections
    h, c = h0, c0
    ys = []
    for t in range(x.shape[0]):
        h, c = cell_reference(gates_x[t] + h @ w_hh.t(), c)  # [B, H]
        ys.append(h)
    # T = 0: an empty slice of gates_x keeps y on the autograd graph, like the native op's y
    y = torch.stack(ys) if ys else gates_x[..., : w_hh.shape[1]]  # [T, B, H]
    return y, (h, c)


@_backend.on_native_load
def _register() -> None:
    # Autograd is registered in C++ (csrc/autograd.cpp). The fake impls give torch.compile the
    # outputs' shapes; the kernels return contiguous
    # tensors, hence new_empty rather than empty_like (which would copy the inputs' strides).
    @torch.library.register_fake("plugkit::lstm_cell")
    def _(gates, c_prev):
        state = c_prev.shape  # [B, H]
        return c_prev.new_empty(state), c_prev.new_empty(state), gates.new_empty(gates.shape)

    @torch.library.register_fake("plugkit::lstm_cell_backward")
    def _(grad_h, grad_c, act, c_prev, c):
        return act.new_empty(act.shape), c_prev.new_empty(c_prev.shape)

    @torch.library.register_fake("plugkit::lstm_layer")
    def _(x, h0, c0, w_ih, w_hh, b_ih, b_hh):
        steps, batch, hidden = x.shape[0], x.shape[1], w_hh.shape[1]
        state = (steps, batch, hidden)
        return (
            x.new_empty(state),  # y
            h0.new_empty(h0.shape),
            c0.new_empty(c0.shape),
            x.new_empty(steps, batch, 4 * hidden),  # act
            x.new_empty(state),  # cs
        )

    @torch.library.register_fake("plugkit::lstm_layer_backward")
    def _(grad_y, grad_h_n, grad_c_n, x, h0, c0, w_ih, w_hh, y, act, cs):
        grads = tuple(t.new_empty(t.shape) for t in (x, h0, c0, w_ih, w_hh))
        return *grads, w_ih.new_empty(w_ih.shape[0]), w_ih.new_empty(w_ih.shape[0])  # db_ih, db_hh
