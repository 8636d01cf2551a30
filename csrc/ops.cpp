// Every plugkit operator's schema, in one place. The kernels live in cpu/ and cuda/ (each file
// adds its TORCH_LIBRARY_IMPL for one dispatch key), autograd in autograd.cpp, and the fake
// (meta) impls in Python, next to each op's public function in plugkit/ops/.
//
// Backward passes are operators too, so torch.compile and AOT autograd trace them as opaque
// calls. Extra outputs (`act`, `cs`) are what the backward needs; the public Python functions
// hide them.
#include <Python.h>
#include <torch/library.h>

TORCH_LIBRARY(plugkit, m) {
  // z = mu + exp(logvar / 2) * eps and kl = 0.5 * sum_d(exp(logvar) + mu^2 - 1 - logvar).
  // Exactly one of eps (same shape as mu) and key (int64 [seed, offset] on mu's device) is given.
  m.def("reparameterize_kl(Tensor mu, Tensor logvar, Tensor? eps, Tensor? key) -> (Tensor, Tensor)");
  // The raw Philox4x32-10 block function, for known-answer tests: counters int64 [N, 4] and
  // key int64 [2] hold uint32 values; returns the int64 [N, 4] output words.
  m.def("philox4x32(Tensor counters, Tensor key) -> Tensor");
  m.def(
      "reparameterize_kl_backward(Tensor grad_z, Tensor grad_kl, Tensor mu, Tensor logvar, "
      "Tensor z) -> (Tensor, Tensor)");
  // kind: "bce" | "hinge" | "wasserstein"; label_smoothing only for "bce".
  m.def("gan_d_loss(Tensor real, Tensor fake, str kind, float label_smoothing) -> Tensor");
  m.def(
      "gan_d_loss_backward(Tensor grad, Tensor real, Tensor fake, str kind, "
      "float label_smoothing) -> (Tensor, Tensor)");
  m.def("gan_g_loss(Tensor fake, str kind) -> Tensor");
  m.def("gan_g_loss_backward(Tensor grad, Tensor fake, str kind) -> Tensor");
  // gates [B, 4H] pre-activations (i, f, g, o); act [B, 4H] their activations.
  m.def("lstm_cell(Tensor gates, Tensor c_prev) -> (Tensor h, Tensor c, Tensor act)");
  m.def(
      "lstm_cell_backward(Tensor grad_h, Tensor grad_c, Tensor act, Tensor c_prev, Tensor c) "
      "-> (Tensor, Tensor)");
  // x [T, B, I]; weights in nn.LSTM's layout; act [T, B, 4H] and cs [T, B, H] are saved for BPTT.
  m.def(
      "lstm_layer(Tensor x, Tensor h0, Tensor c0, Tensor w_ih, Tensor w_hh, Tensor b_ih, "
      "Tensor b_hh) -> (Tensor y, Tensor h_n, Tensor c_n, Tensor act, Tensor cs)");
  m.def(
      "lstm_layer_backward(Tensor grad_y, Tensor grad_h_n, Tensor grad_c_n, Tensor x, Tensor h0, "
      "Tensor c0, Tensor w_ih, Tensor w_hh, Tensor y, Tensor act, Tensor cs) -> (Tensor, Tensor, "
      "Tensor, Tensor, Tensor, Tensor, Tensor)");
  // Diffusion. x0 [B, ...], abar [B] (float32/float64): x_t = sqrt(abar) x0 + sqrt(1 - abar) eps
  // per row. Exactly one of eps (like x0) and key (int64 [seed, offset] on x0's device) is given;
  // drawn, element j of row r takes the normal at stream position (row_start + r) * D + j.
  m.def("diffusion_noise(Tensor x0, Tensor abar, Tensor? eps, Tensor? key, int row_start) -> Tensor");
  m.def("diffusion_noise_backward(Tensor grad, Tensor abar) -> Tensor");
  // mean((pred - eps)^2), eps given or drawn again from the key diffusion_noise used.
  m.def("diffusion_loss(Tensor pred, Tensor? eps, Tensor? key, int row_start) -> Tensor");
  m.def(
      "diffusion_loss_backward(Tensor grad, Tensor pred, Tensor? eps, Tensor? key, "
      "int row_start) -> Tensor");
  // One DDIM step (eta = 0) from abar_t to abar_s (0-D float tensors on x_t's device), the
  // predicted x_0 clamped to [-clip, clip] when clip is given.
  m.def("ddim_step(Tensor x_t, Tensor eps, Tensor abar_t, Tensor abar_s, float? clip) -> Tensor");
}

// Importing plugkit._C runs the registrations above; the module itself only reports how it was
// built (no pybind11 needed, which keeps this file quick to compile).
extern "C" PyMODINIT_FUNC PyInit__C(void) {
  static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
  PyObject* m = PyModule_Create(&module);
  if (m == nullptr) return nullptr;
  PyModule_AddStringConstant(m, "cpu_capability", PLUGKIT_CPU_CAPABILITY_NAME);
#ifdef PLUGKIT_WITH_CUDA
  PyModule_AddIntConstant(m, "cuda_compiled", 1);
#else
  PyModule_AddIntConstant(m, "cuda_compiled", 0);
#endif
  PyModule_AddIntConstant(m, "openmp", _OPENMP);
  return m;
}
