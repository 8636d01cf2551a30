"""LSTM for text (character-level) and real-valued sequences (Hochreiter & Schmidhuber, "Long
Short-Term Memory", Neural Computation 1997; stacked as in Graves, "Generating Sequences With
Recurrent Neural Networks", 2013, and Karpathy's char-rnn).

Text: a line is a sequence of characters followed by an end token (token 0). The model reads
[end, c1, ..., c_{L-1}] -- the end token doubles as "start of line" -- and predicts
[c1, ..., c_L, end] one character ahead. The loss is the negative log-likelihood in nats per
character, the end token included (it says where names stop), padding after it excluded. A
line longer than the data's max_length comes as char-rnn's consecutive windows
(plugkit.formats.text.cut): a window's row has no end token, its last character being the next
window's first, so the model predicts that character where a line would end, and never learns
that lines end at a cut.
Sequences (standardized [B, T, F] windows): the model reads [0, x1, ..., x_{T-1}] and predicts
a diagonal Gaussian over x_t, the loss in nats per value.
Each layer is one call to plugkit.ops.lstm_layer, so the whole time loop and its backward pass
run in the fused native kernel. Sampling runs the same layers one step at a time.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from plugkit import ops
from plugkit.errors import UsageError
from plugkit.families import image_nets
from plugkit.family import Batch, DataInfo, Family
from plugkit.formats import text
from plugkit.options import option


@dataclass
class Options:
    hidden: int = option(256, "LSTM width of every layer", min=1)
    layers: int = option(3, "stacked LSTM layers", min=1)
    embed: int = option(64, "size of the character embedding", min=1)
    # dropout and weight decay: without them the model learns names by heart from its 5th
    # epoch (its held-out NLL rising from there; docs/results.md, Text). A run from before
    # weight_decay existed resumes with its own 0: the optimizer's saved state carries it
    dropout: float = option(0.3, "dropout between layers and before the output head (names: "
                            "0.3 beat 0 and 0.5)", min=0.0, max=0.9)
    # names, side by side: with ema=0.999 and 2 layers it gave the lowest held-out NLL, 1.926,
    # but 69% new names over 20,000 samples (docs/results.md), so it is not the default
    weight_drop: float = option(0.0, "DropConnect on the hidden-to-hidden weights, one mask "
                                "a batch (Merity et al., AWD-LSTM, 2018)", min=0.0, max=0.9)
    lr: float = option(2e-3, "AdamW learning rate", min=0.0, max=1.0)
    # names, side by side: 0.5 lowered the held-out NLL 1.945 -> 1.939 but new names 72% ->
    # 68% (docs/results.md), as the moving average does, so it is not the default either
    lr_drop: float = option(1.0, "multiply the learning rate by this after each epoch that did "
                            "not lower the validation loss (1: never; names: 0.5 gave a lower "
                            "NLL, fewer new names)", min=0.0, max=1.0)
    weight_decay: float = option(0.1, "AdamW's decoupled weight decay (names: 0.1 kept more "
                                 "samples new at the same NLL; 0.3 underfit)", min=0.0)
    # names, side by side: 0.999 lowered the held-out NLL 1.945 -> 1.929 but new names 72% ->
    # 67% (docs/results.md), so it is the user's choice, not the default
    ema: float = option(0.0, "decay of the moving average of the weights that validation and "
                        "sampling use (0: none; names: 0.999 gave a lower NLL, fewer new names)",
                        min=0.0, max=0.99999)
    max_len: int = option(0, "longest sample in characters (prefix included); 0: a bit above "
                          "the longest training line, or the window length when long lines "
                          "were cut into windows", min=0)


@dataclass
class Settings:
    temperature: float = option(1.0, "text: divide the logits by this (< 1 safer, > 1 wilder)")
    top_k: int = option(0, "text: draw only among the k likeliest next characters (0: all)",
                        min=0)
    prefix: str = option("", "text: every sample starts with these characters")

    def __post_init__(self) -> None:
        if not self.temperature > 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")


class LSTMStack(nn.Module):
    """Stacked LSTM layers, parameters named and shaped like nn.LSTM's (weight_ih_l0 [4H, I],
    weight_hh_l0 [4H, H], bias_ih_l0, bias_hh_l0 [4H], ...), so state dicts interchange."""

    def __init__(self, inputs: int, hidden: int, layers: int, dropout: float,
                 weight_drop: float = 0.0) -> None:
        super().__init__()
        self.hidden, self.layers, self.dropout = hidden, layers, dropout
        self.weight_drop = weight_drop
        bound = 1 / math.sqrt(hidden)  # PyTorch's LSTM init: U(-1/sqrt(H), 1/sqrt(H))
        for k in range(layers):
            size = inputs if k == 0 else hidden
            shapes = {"weight_ih": (4 * hidden, size), "weight_hh": (4 * hidden, hidden),
                      "bias_ih": (4 * hidden,), "bias_hh": (4 * hidden,)}
            for name, shape in shapes.items():
                weight = nn.Parameter(torch.empty(shape).uniform_(-bound, bound))
                self.register_parameter(f"{name}_l{k}", weight)

    def weights(self, k: int) -> list[torch.Tensor]:
        return [getattr(self, f"{name}_l{k}")
                for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]

    def dropped(self, k: int) -> list[torch.Tensor]:
        """Layer k's weights for a forward pass: in training, W_hh with a DropConnect mask
        drawn for the whole batch (the same recurrent connections dropped at every step)."""
        w_ih, w_hh, b_ih, b_hh = self.weights(k)
        if self.training and self.weight_drop:
            w_hh = F.dropout(w_hh, self.weight_drop)
        return [w_ih, w_hh, b_ih, b_hh]

    def forward(self, x: torch.Tensor, state: list | None = None) -> tuple[torch.Tensor, list]:
        """x (T, B, I), state: per layer (h, c) each (B, H), or None for zeros."""
        if state is None:
            zeros = x.new_zeros(x.shape[1], self.hidden)  # (B, H)
            state = [(zeros, zeros)] * self.layers
        new_state = []
        for k in range(self.layers):
            if k > 0:
                x = F.dropout(x, self.dropout, self.training)
            x, (h, c) = ops.lstm_layer(x.contiguous(), *state[k], *self.dropped(k))  # (T, B, H)
            new_state.append((h, c))
        return x, new_state


class PerSampleLSTMStack(LSTMStack):
    """LSTMStack for DP-SGD: batch-first in and out, since Opacus takes a layer's first
    dimension for its rows, and a gradient per sample for Opacus' clipping
    (`per_sample_grads`, registered by plugkit.privacy). The fused kernel sums its weight
    gradients over the batch inside its time loop, so the per-sample ones are worked out
    here: each layer's gradient with respect to its gates at every step (dgates [T, B, 4H])
    by backpropagation through time of that layer alone, batched, then one sum over time per
    sample, dW_ih[b] = sum_t dgates[t, b]^T x[t, b], dW_hh[b] = sum_t dgates[t, b]^T h[t-1, b].
    Opacus' DPLSTM, the alternative, materializes the per-sample gradients at every time
    step: 34-35 s a step of 512 names at the default sizes, against 8-11 s here, measured
    side by side (docs/privacy.md). Same parameter names: a private run's weights load into
    LSTMStack."""

    def forward(self, x: torch.Tensor, state: list | None = None) -> tuple[torch.Tensor, list]:
        """x (B, T, I) batch-first; returns y (B, T, H) and the state, as LSTMStack."""
        x = x.transpose(0, 1)  # (T, B, I)
        if state is None:
            zeros = x.new_zeros(x.shape[1], self.hidden)  # (B, H)
            state = [(zeros, zeros)] * self.layers
        keep = self.training and torch.is_grad_enabled()  # what per_sample_grads reads
        inputs, masks, new_state = [], [], []
        for k in range(self.layers):
            if k > 0 and self.training and self.dropout:  # the mask kept: F.dropout's draw
                mask = F.dropout(torch.ones_like(x), self.dropout, True)
                x = x * mask
                masks.append(mask)
            else:
                masks.append(None)
            inputs.append(x.detach())
            x, (h, c) = ops.lstm_layer(x.contiguous(), *state[k], *self.weights(k))
            new_state.append((h, c))
        self._saved = (inputs, masks) if keep else None
        return x.transpose(0, 1), new_state

    @staticmethod
    def per_sample_grads(layer: PerSampleLSTMStack, activations: list,
                         backprops: torch.Tensor) -> dict[nn.Parameter, torch.Tensor]:
        """Every weight's gradient per sample [B, *shape], from the gradient of the last
        layer's output (B, T, H) (Opacus has scaled it to per-sample losses). Assumes the
        forward started from zero states, as training does."""
        inputs, masks = layer._saved
        grad = backprops.transpose(0, 1)  # (T, B, H)
        grads: dict[nn.Parameter, torch.Tensor] = {}
        for k in reversed(range(layer.layers)):
            w_ih, w_hh, b_ih, b_hh = layer.weights(k)
            dgates, h_prev = _gates_grad(inputs[k], w_ih, w_hh, b_ih, b_hh, grad)
            grads[w_ih] = torch.einsum("tbg,tbi->bgi", dgates, inputs[k])  # (B, 4H, I)
            grads[w_hh] = torch.einsum("tbg,tbh->bgh", dgates, h_prev)  # (B, 4H, H)
            grads[b_ih] = grads[b_hh] = dgates.sum(0)  # (B, 4H)
            if k > 0:
                grad = dgates @ w_ih.detach()  # (T, B, I): the layer below's output gradient
                grad = grad if masks[k] is None else grad * masks[k]
        return grads


def _gates_grad(x, w_ih, w_hh, b_ih, b_hh, grad_y):
    """(dL/dgates (T, B, 4H), the hidden states h_{t-1} (T, B, H)) of one layer with input x
    (T, B, I) from zero states, given dL/dy (T, B, H): its forward again, step by step on the
    fused cell, with the input projections as the leaf whose gradient dgates is."""
    with torch.enable_grad():
        projected = (x @ w_ih.detach().t() + (b_ih + b_hh).detach()).requires_grad_()
        h = c = x.new_zeros(x.shape[1], w_hh.shape[1])  # (B, H)
        states = []
        for t in range(len(x)):
            states.append(h)
            h, c = ops.lstm_cell(projected[t] + h @ w_hh.detach().t(), c)
        y = torch.stack(states[1:] + [h])  # (T, B, H)
        (dgates,) = torch.autograd.grad(y, projected, grad_y)
    return dgates, torch.stack(states).detach()


class CharNet(nn.Module):
    """Embedding -> stacked LSTM -> logits over the V characters plus the end token."""

    def __init__(self, tokens: int, o: Options, private: bool = False) -> None:
        super().__init__()
        self.embed = nn.Embedding(tokens, o.embed)
        stack = PerSampleLSTMStack if private else LSTMStack
        self.lstm = stack(o.embed, o.hidden, o.layers, o.dropout, o.weight_drop)
        self.head = nn.Linear(o.hidden, tokens)
        self.dropout = o.dropout

    def forward(self, idx: torch.Tensor, state: list | None = None) -> tuple[torch.Tensor, list]:
        """idx (B, T) tokens -> logits (B, T, V+1) and the LSTM state after the last step."""
        if isinstance(self.lstm, PerSampleLSTMStack):  # batch-first, for Opacus; the state
            y, state = self.lstm(self.embed(idx), state=state)  # a keyword: hooks skip it
            return self.head(F.dropout(y, self.dropout, self.training)), state  # (B, T, V+1)
        x = self.embed(idx).transpose(0, 1)  # (T, B, E): time-major for lstm_layer
        y, state = self.lstm(x, state)  # (T, B, H)
        y = F.dropout(y, self.dropout, self.training)
        return self.head(y).transpose(0, 1), state  # (B, T, V+1)


class SequenceNet(nn.Module):
    """Linear input projection -> stacked LSTM -> mean and log-scale of the next value."""

    def __init__(self, features: int, o: Options) -> None:
        super().__init__()
        self.embed = nn.Linear(features, o.embed)
        self.lstm = LSTMStack(o.embed, o.hidden, o.layers, o.dropout, o.weight_drop)
        self.head = nn.Linear(o.hidden, 2 * features)
        self.dropout = o.dropout

    def forward(self, x: torch.Tensor, state: list | None = None):
        """x (B, T, F) -> (mean, log_sigma) each (B, T, F), and the LSTM state."""
        y, state = self.lstm(self.embed(x).transpose(0, 1), state)  # (T, B, H)
        y = F.dropout(y, self.dropout, self.training)
        mean, log_sigma = self.head(y).transpose(0, 1).chunk(2, dim=2)
        return mean, log_sigma.clamp(-7.0, 7.0), state  # the clamp keeps exp() finite


class LSTM(Family):
    name = "lstm"
    description = "LSTM for text (char-level) and real-valued sequences on the fused LSTM kernel"
    modalities = ("text", "sequence")
    likelihood = True  # val_loss: nats per character (or value)
    # DP-SGD on the fused kernel, per-sample gradients by PerSampleLSTMStack
    private = ("text",)
    Options = Options
    Settings = Settings
    default_dataset = "names"

    def __init__(self, options: Options, info: DataInfo, device: torch.device) -> None:
        super().__init__(options, info, device)
        if info.private and options.weight_drop:
            raise UsageError("lstm under `dp_epsilon` needs -o weight_drop=0: its per-sample "
                             "gradients (PerSampleLSTMStack) are of the whole recurrent weights")
        if info.modality == "sequence":
            self.length, self.features = info.meta["length"], info.meta["features"]
            self.net: nn.Module = SequenceNet(self.features, options).to(device)
        else:
            self.vocab = list(info.meta["vocab"])
            longest = info.meta.get("max_length", 248)  # runs from before it was recorded
            if info.meta.get("cut"):  # lines were cut: samples as long as the windows it read
                self.max_len = options.max_len or longest
            else:
                self.max_len = options.max_len or longest + max(8, longest // 4)
            self.net = CharNet(len(self.vocab) + 1, options, info.private).to(device)
        self.optimizer = torch.optim.AdamW(self.net.parameters(), lr=options.lr,
                                           weight_decay=options.weight_decay, fused=True)
        # what validation and sampling use: the moving average of the weights when there is
        # one (its held-out loss is what picks the best weights)
        self.average = copy.deepcopy(self.net).requires_grad_(False) if options.ema else None
        self.model = self.average if self.average is not None else self.net

    def modules(self) -> dict[str, nn.Module]:
        extra = {"lstm_ema": self.average} if self.average is not None else {}
        return {"lstm": self.net, **extra}

    def private_parts(self) -> tuple[dict[str, nn.Module], dict[str, torch.optim.Optimizer]]:
        return {"lstm": self.net}, self.optimizers()  # the average is post-processing

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"adam": self.optimizer}

    def _nll(self, x: torch.Tensor, net: nn.Module) -> tuple[torch.Tensor, int]:
        """Summed NLL in nats under `net` and how many predictions it sums: characters (end
        tokens included) of token rows x (B, L), or values of sequences x (B, T, F)."""
        if self.info.modality == "sequence":
            mean, log_sigma, _ = net(F.pad(x[:, :-1], (0, 0, 1, 0)))  # zeros start (B, T, F)
            z = (x - mean) * torch.exp(-log_sigma)
            nll = 0.5 * z.square() + log_sigma + 0.5 * math.log(2 * math.pi)  # (B, T, F)
            return nll.sum(), nll.numel()
        nll, mask = self._char_nll(x, net)
        return (nll * mask).sum(), int(mask.sum())

    def _char_nll(self, x: torch.Tensor, net: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
        """NLL of each character of token rows x (B, L) and the mask of those that count: up
        to and including each row's first end token."""
        x = x[:, : int((x != text.END).sum(1).max()) + 1]  # drop the all-padding tail columns
        inputs = F.pad(x[:, :-1], (1, 0), value=text.END)  # (B, L): end token as start of line
        logits, _ = net(inputs)  # (B, L, V+1)
        nll = F.cross_entropy(logits.transpose(1, 2), x, reduction="none")  # (B, L)
        ended = (x == text.END).long()
        return nll, (ended.cumsum(1) - ended) == 0

    def train_step(self, batch: Batch) -> dict[str, float]:
        self.net.train()
        if self.info.private:  # each line's loss from that line alone: its nats per character
            nll, mask = self._char_nll(batch.x, self.net)
            loss = ((nll * mask).sum(1) / mask.sum(1)).mean()
        else:
            total, count = self._nll(batch.x, self.net)
            loss = total / count
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if not self.info.private:  # DP-SGD clips each line's gradient instead
            nn.utils.clip_grad_norm_(self.net.parameters(), 1.0)  # rare huge gradients
        self.optimizer.step()
        if self.average is not None:
            image_nets.update_average(self.average, self.net, self.optimizer, self.options.ema)
        return {"loss": loss.item()}

    def validated(self, improved: bool) -> None:
        if not improved:
            for group in self.optimizer.param_groups:
                group["lr"] *= self.options.lr_drop

    def val_loss(self, batch: Batch) -> tuple[float, int]:
        """Per character (or value) over the whole validation set, not per line: the core sums
        the (total, count) pairs of every batch."""
        self.model.eval()
        with torch.no_grad():
            total, count = self._nll(batch.x, self.model)
            return total.item(), count

    def encode_prefix(self, prefix: str) -> torch.Tensor:
        unknown = sorted(set(prefix) - set(self.vocab))
        if unknown:
            raise UsageError(f"the prefix has characters the model never saw: {unknown!r}; "
                             f"its vocabulary is {''.join(self.vocab)!r}")
        return torch.from_numpy(text.encode([prefix], self.vocab)[0, :len(prefix)])

    @torch.no_grad()
    def sample(self, n: int, *, generator: torch.Generator, labels=None,
               settings: Settings | None = None) -> torch.Tensor:
        """Text: tokens [n, L] (the prefix's, then the drawn ones up to the end token);
        sequences: standardized [n, T, F]."""
        settings = settings or Settings()
        self.model.eval()
        if self.info.modality == "sequence":
            if settings != Settings():
                raise UsageError("temperature, top_k and prefix are for text; this run's "
                                 "data is sequences")
            return self._sample_sequences(n, generator)
        prefix, top_k = settings.prefix, settings.top_k
        given = self.encode_prefix(prefix).to(self.device)
        start = torch.cat([given.new_zeros(1), given])
        idx = start.expand(n, -1)  # (n, 1 + len(prefix))
        logits, state = self.model(idx, None)  # read the prefix in one call
        steps = max(self.max_len - len(prefix), 0)
        out = torch.zeros(n, steps + 1, dtype=torch.long, device=self.device)  # (n, steps+1)
        done = torch.zeros(n, dtype=torch.bool, device=self.device)
        for t in range(steps):
            scores = logits[:, -1] / settings.temperature  # (n, V+1)
            if 0 < top_k < scores.shape[1]:
                kth = scores.topk(top_k, dim=1).values[:, -1:]  # (n, 1)
                scores = scores.masked_fill(scores < kth, -math.inf)
            nxt = torch.multinomial(scores.softmax(1), 1, generator=generator)  # (n, 1)
            nxt = nxt.masked_fill(done[:, None], text.END)  # finished lines stay finished
            out[:, t] = nxt[:, 0]
            done |= nxt[:, 0] == text.END
            if done.all():
                break
            logits, state = self.model(nxt, state)  # one step: lstm_layer with T = 1
        return torch.cat([given.expand(n, -1), out], 1)  # (n, len(prefix) + steps + 1)

    def _sample_sequences(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """(n, T, F) standardized sequences, each value drawn from the predicted Gaussian."""
        x = torch.zeros(n, 1, self.features, device=self.device)  # the zero start value
        state, out = None, []
        for _ in range(self.length):
            mean, log_sigma, state = self.model(x, state)  # (n, 1, F) each
            noise = torch.randn(mean.shape, generator=generator, device=self.device)
            x = mean + log_sigma.exp() * noise
            out.append(x)
        return torch.cat(out, dim=1)
