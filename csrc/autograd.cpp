// Autograd for the native operators, registered in C++ for the Autograd dispatch key: the
// backward runs without Python, which is what keeps small, overhead-bound calls (a GAN loss
// over 256 logits) cheap. Each forward redispatches below autograd to the CPU or CUDA kernel;
// each backward calls the matching *_backward operator (DESIGN.md §1 gives the formulas).
#include <torch/autograd.h>
#include <torch/library.h>

namespace plugkit {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// Inside a forward, calls must skip the Autograd key (grad mode off is not enough: the
// dispatcher would send them straight back here).
using BelowAutograd = at::AutoDispatchBelowADInplaceOrView;

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
}

}  // namespace plugkit
