// Autograd for the native operators, registered in C++ for the Autograd dispatch key: the
// backward runs without Python, which is what keeps small, overhead-bound calls (a GAN loss
// over 256 logits) cheap. Each forward redispatches below autograd to the CPU or CUDA kernel;
// each backward calls the matching *_backward operator (docs/operators.md gives the formulas).
#include <torch/autograd.h>
#include <torch/library.h>

namespace plugkit {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// Inside a forward, calls must skip the Autograd key (grad mode off is not enough: the
// dispatcher would send them straight back here).
using BelowAutograd = at::AutoDispatchBelowADInplaceOrView;

// An output's incoming gradient, or zeros where the output was not used. The LSTM Functions turn
// off autograd's own zero-filling, which would also fill the internal outputs (act, cs) whose
// gradients backward ignores: for lstm_layer that was an 8 MB fill per call at T=32, B=64, H=256.
at::Tensor or_zeros(const at::Tensor& grad, const at::Tensor& like) {
  return grad.defined() ? grad : at::zeros_like(like, at::MemoryFormat::Contiguous);
}

// The typed handle of a plugkit operator, looked up once.
template <typename Signature>
c10::TypedOperatorHandle<Signature> op(const char* name) {
  return c10::Dispatcher::singleton().findSchemaOrThrow(name, "").typed<Signature>();
}

struct GanDLoss : torch::autograd::Function<GanDLoss> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& real, const at::Tensor& fake,
                            c10::string_view kind, double smoothing) {
    static const auto kernel =
        op<at::Tensor(const at::Tensor&, const at::Tensor&, c10::string_view, double)>(
            "plugkit::gan_d_loss");
    ctx->save_for_backward({real, fake});
    ctx->saved_data["kind"] = std::string(kind);
    ctx->saved_data["smoothing"] = smoothing;
    const BelowAutograd below;
    return kernel.call(real, fake, kind, smoothing);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    static const auto kernel = op<std::tuple<at::Tensor, at::Tensor>(
        const at::Tensor&, const at::Tensor&, const at::Tensor&, c10::string_view, double)>(
        "plugkit::gan_d_loss_backward");
    const auto saved = ctx->get_saved_variables();
    const std::string kind = ctx->saved_data["kind"].toStringRef();
    auto [d_real, d_fake] =
        kernel.call(grads[0], saved[0], saved[1], kind, ctx->saved_data["smoothing"].toDouble());
    return {d_real, d_fake, at::Tensor(), at::Tensor()};
  }
};

struct GanGLoss : torch::autograd::Function<GanGLoss> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& fake, c10::string_view kind) {
    static const auto kernel =
        op<at::Tensor(const at::Tensor&, c10::string_view)>("plugkit::gan_g_loss");
    ctx->save_for_backward({fake});
    ctx->saved_data["kind"] = std::string(kind);
    const BelowAutograd below;
    return kernel.call(fake, kind);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    static const auto kernel =
        op<at::Tensor(const at::Tensor&, const at::Tensor&, c10::string_view)>(
            "plugkit::gan_g_loss_backward");
    const std::string kind = ctx->saved_data["kind"].toStringRef();
    return {kernel.call(grads[0], ctx->get_saved_variables()[0], kind), at::Tensor()};
  }
};

using OptTensor = std::optional<at::Tensor>;

struct ReparameterizeKl : torch::autograd::Function<ReparameterizeKl> {
  static variable_list forward(AutogradContext* ctx, const at::Tensor& mu,
                               const at::Tensor& logvar, const OptTensor& eps,
                               const OptTensor& key) {
    static const auto kernel = op<std::tuple<at::Tensor, at::Tensor>(
        const at::Tensor&, const at::Tensor&, const OptTensor&, const OptTensor&)>(
        "plugkit::reparameterize_kl");
    const BelowAutograd below;
    auto [z, kl] = kernel.call(mu, logvar, eps, key);
    // z - mu = std * eps: the backward needs neither eps nor a replay of the RNG
    ctx->save_for_backward({mu, logvar, z});
    return {z, kl};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    static const auto kernel = op<std::tuple<at::Tensor, at::Tensor>(
        const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&,
        const at::Tensor&)>("plugkit::reparameterize_kl_backward");
    const auto saved = ctx->get_saved_variables();  // unused outputs' grads arrive as zeros
    auto [d_mu, d_logvar] = kernel.call(grads[0], grads[1], saved[0], saved[1], saved[2]);
    return {d_mu, d_logvar, at::Tensor(), at::Tensor()};
  }
};

// The cell's and the layer's extra outputs (act, cs) are internals the backward reads; they are
// non-differentiable, and the backward ops take the activations, never the pre-activations.
struct LstmCell : torch::autograd::Function<LstmCell> {
  static variable_list forward(AutogradContext* ctx, const at::Tensor& gates,
                               const at::Tensor& c_prev) {
    static const auto kernel =
        op<std::tuple<at::Tensor, at::Tensor, at::Tensor>(const at::Tensor&, const at::Tensor&)>(
            "plugkit::lstm_cell");
    const BelowAutograd below;
    auto [h, c, act] = kernel.call(gates, c_prev);
    ctx->mark_non_differentiable({act});
    ctx->set_materialize_grads(false);
    ctx->save_for_backward({act, c_prev, c});
    return {h, c, act};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    static const auto kernel = op<std::tuple<at::Tensor, at::Tensor>(
        const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&,
        const at::Tensor&)>("plugkit::lstm_cell_backward");
    const auto saved = ctx->get_saved_variables();  // act, c_prev, c
    const at::Tensor& c = saved[2];  // [B, H], like both incoming gradients
    auto [d_gates, d_c_prev] =
        kernel.call(or_zeros(grads[0], c), or_zeros(grads[1], c), saved[0], saved[1], c);
    return {d_gates, d_c_prev};
  }
};

struct LstmLayer : torch::autograd::Function<LstmLayer> {
  static variable_list forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& h0,
                               const at::Tensor& c0, const at::Tensor& w_ih,
                               const at::Tensor& w_hh, const at::Tensor& b_ih,
                               const at::Tensor& b_hh) {
    using Out = std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>;
    static const auto kernel =
        op<Out(const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&,
               const at::Tensor&, const at::Tensor&, const at::Tensor&)>("plugkit::lstm_layer");
    const BelowAutograd below;
    auto [y, h_n, c_n, act, cs] = kernel.call(x, h0, c0, w_ih, w_hh, b_ih, b_hh);
    ctx->mark_non_differentiable({act, cs});
    ctx->set_materialize_grads(false);
    ctx->save_for_backward({x, h0, c0, w_ih, w_hh, y, act, cs});
    return {y, h_n, c_n, act, cs};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    using T = const at::Tensor&;
    using Out = std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor,
                           at::Tensor>;
    static const auto kernel = op<Out(T, T, T, T, T, T, T, T, T, T, T)>(
        "plugkit::lstm_layer_backward");
    const auto s = ctx->get_saved_variables();  // x, h0, c0, w_ih, w_hh, y, act, cs
    auto [dx, dh0, dc0, dw_ih, dw_hh, db_ih, db_hh] =
        kernel.call(or_zeros(grads[0], s[5]), or_zeros(grads[1], s[1]), or_zeros(grads[2], s[2]),
                    s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7]);
    return {dx, dh0, dc0, dw_ih, dw_hh, db_ih, db_hh};
  }
};

std::tuple<at::Tensor, at::Tensor, at::Tensor> lstm_cell(const at::Tensor& gates,
                                                         const at::Tensor& c_prev) {
  const auto out = LstmCell::apply(gates, c_prev);
  return {out[0], out[1], out[2]};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> lstm_layer(
    const at::Tensor& x, const at::Tensor& h0, const at::Tensor& c0, const at::Tensor& w_ih,
    const at::Tensor& w_hh, const at::Tensor& b_ih, const at::Tensor& b_hh) {
  const auto out = LstmLayer::apply(x, h0, c0, w_ih, w_hh, b_ih, b_hh);
  return {out[0], out[1], out[2], out[3], out[4]};
}

at::Tensor gan_d_loss(const at::Tensor& real, const at::Tensor& fake, c10::string_view kind,
                      double smoothing) {
  return GanDLoss::apply(real, fake, kind, smoothing);
}

at::Tensor gan_g_loss(const at::Tensor& fake, c10::string_view kind) {
  return GanGLoss::apply(fake, kind);
}

std::tuple<at::Tensor, at::Tensor> reparameterize_kl(const at::Tensor& mu, const at::Tensor& logvar,
                                                     const OptTensor& eps, const OptTensor& key) {
  const auto out = ReparameterizeKl::apply(mu, logvar, eps, key);
  return {out[0], out[1]};
}

}  // namespace

TORCH_LIBRARY_IMPL(plugkit, Autograd, m) {
  m.impl("gan_d_loss", &gan_d_loss);
  m.impl("gan_g_loss", &gan_g_loss);
  m.impl("reparameterize_kl", &reparameterize_kl);
  m.impl("lstm_cell", &lstm_cell);
  m.impl("lstm_layer", &lstm_layer);
}

}  // namespace plugkit
