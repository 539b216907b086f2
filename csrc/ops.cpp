// Operator schemas of the atrous library (all in this one file) and the Python module stub.
//
// Kernels live in one file per op and backend: csrc/cpu/*.cpp register with
// TORCH_LIBRARY_IMPL(atrous, CPU, m), csrc/cuda/*.cu with TORCH_LIBRARY_IMPL(atrous, CUDA, m).
// Autograd and fake (meta) kernels are registered from Python in atrous/ops.py.
#include <Python.h>
#include <torch/library.h>

#include "common/algorithms.h"

#define ATROUS_STR_(x) #x
#define ATROUS_STR(x) ATROUS_STR_(x)

TORCH_LIBRARY(atrous, m) {
  // Fake kernels and autograd are registered in this Python module; the dispatcher names it
  // in errors when the op is used before it is imported.
  m.set_python_module("atrous.ops");

  // Depthwise atrous convolution, F.conv2d(input, weight, bias, stride, padding, dilation,
  // groups=C) with weight (C*m, 1, kh, kw).
  m.def("depthwise_conv2d(Tensor input, Tensor weight, Tensor? bias, int[2] stride, "
        "int[2] padding, int[2] dilation, str algo=\"auto\") -> Tensor");
  m.def("depthwise_conv2d_backward_input(Tensor grad_output, Tensor weight, "
        "SymInt[4] input_size, int[2] stride, int[2] padding, int[2] dilation, str algo=\"auto\") -> Tensor");
  m.def("depthwise_conv2d_backward_weight(Tensor grad_output, Tensor input, "
        "SymInt[4] weight_size, int[2] stride, int[2] padding, int[2] dilation, str algo=\"auto\") -> Tensor");

  // Pointwise (1x1) convolution, a GEMM per image: out[n] = weight (C_out x C) @ input[n].
  m.def("pointwise_conv2d(Tensor input, Tensor weight, Tensor? bias, str algo=\"auto\") -> Tensor");
  m.def("pointwise_conv2d_backward_input(Tensor grad_output, Tensor weight, str algo=\"auto\") -> Tensor");
  m.def("pointwise_conv2d_backward_weight(Tensor grad_output, Tensor input, str algo=\"auto\") -> Tensor");

  // Dense atrous convolution (groups=1): dilated im2col + the same GEMM.
  m.def("atrous_conv2d(Tensor input, Tensor weight, Tensor? bias, int[2] stride, "
        "int[2] padding, int[2] dilation, str algo=\"auto\") -> Tensor");
  m.def("atrous_conv2d_backward_input(Tensor grad_output, Tensor weight, "
        "SymInt[4] input_size, int[2] stride, int[2] padding, int[2] dilation, str algo=\"auto\") -> Tensor");
  m.def("atrous_conv2d_backward_weight(Tensor grad_output, Tensor input, "
        "SymInt[4] weight_size, int[2] stride, int[2] padding, int[2] dilation, str algo=\"auto\") -> Tensor");

  // Fused separable convolution for inference: depthwise (+ bias, optional ReLU) then pointwise
  // (+ bias), the intermediate kept in cache tile by tile. Forward only.
  m.def("separable_conv2d(Tensor input, Tensor dw_weight, Tensor? dw_bias, Tensor pw_weight, "
        "Tensor? pw_bias, int[2] stride, int[2] padding, int[2] dilation, "
        "str activation=\"none\") -> Tensor");

  // Every convolution op takes algo: "auto" or a rung of its kernel ladder
  // (csrc/common/algorithms.h); atrous.ops.algorithms(name) lists them.

  // Bias gradient of any of the convolutions: grad_output summed over N, H and W.
  m.def("conv2d_backward_bias(Tensor grad_output) -> Tensor");
}

#ifdef ATROUS_WITH_CUDA
// Defined in csrc/cuda/build_info.cu, compiled by nvcc, so it reports what nvcc built.
const char* atrous_cuda_build_info();
#endif

namespace {

template <size_t N>
PyObject* name_tuple(const std::array<std::string_view, N>& names) {
  PyObject* tuple = PyTuple_New(N);
  for (size_t i = 0; i < N; ++i) {
    PyTuple_SET_ITEM(tuple, i, PyUnicode_FromStringAndSize(names[i].data(), names[i].size()));
  }
  return tuple;
}

PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C",
                          "atrous._C: the compiled atrous kernels (importing it registers the "
                          "operators under torch.ops.atrous)",
                          -1, nullptr};

}  // namespace

// `import atrous._C` loads this library, which runs the registrations above. The module
// carries the build configuration so `python -m atrous.info` reports what was compiled.
extern "C" PyMODINIT_FUNC PyInit__C(void) {
  PyObject* module = PyModule_Create(&module_def);
  if (module == nullptr) return nullptr;
#ifdef ATROUS_BUILD_TORCH_VERSION
  PyModule_AddStringConstant(module, "build_torch_version", ATROUS_STR(ATROUS_BUILD_TORCH_VERSION));
#endif
#ifdef ATROUS_WITH_CUDA
  PyModule_AddIntConstant(module, "with_cuda", 1);
  PyModule_AddStringConstant(module, "cuda_build_info", atrous_cuda_build_info());
#else
  PyModule_AddIntConstant(module, "with_cuda", 0);
  PyModule_AddStringConstant(module, "cuda_build_info", "");
#endif
#ifdef _OPENMP
  PyModule_AddIntConstant(module, "with_openmp", 1);
#else
  PyModule_AddIntConstant(module, "with_openmp", 0);
#endif
#ifdef ATROUS_CPU_ARCH_FLAGS
  PyModule_AddStringConstant(module, "cpu_arch_flags", ATROUS_STR(ATROUS_CPU_ARCH_FLAGS));
#else
  PyModule_AddStringConstant(module, "cpu_arch_flags", "");
#endif
  // The kernel ladders, read by atrous.ops.algorithms().
  PyObject* algorithms = PyDict_New();
  PyObject* dw = name_tuple(atrous::kDepthwiseAlgorithms);
  PyObject* pw = name_tuple(atrous::kPointwiseAlgorithms);
  PyObject* dense = name_tuple(atrous::kDenseAlgorithms);
  PyDict_SetItemString(algorithms, "depthwise_conv2d", dw);
  PyDict_SetItemString(algorithms, "pointwise_conv2d", pw);
  PyDict_SetItemString(algorithms, "atrous_conv2d", dense);
  Py_DECREF(dw);
  Py_DECREF(pw);
  Py_DECREF(dense);
  PyModule_AddObject(module, "algorithms", algorithms);  // steals the reference
  return module;
}
