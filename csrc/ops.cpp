// Operator schemas of the atrous library (all in this one file) and the Python module stub.
//
// Kernels live in one file per op and backend: csrc/cpu/*.cpp register with
// TORCH_LIBRARY_IMPL(atrous, CPU, m), csrc/cuda/*.cu with TORCH_LIBRARY_IMPL(atrous, CUDA, m).
// Autograd and fake (meta) kernels are registered from Python in atrous/ops.py.
#include <Python.h>
#include <torch/library.h>

#include <initializer_list>
#include <string>
#include <vector>

#include "common/algorithms.h"

#include "common/conv_index.h"

#define ATROUS_STR_(x) #x
#define ATROUS_STR(x) ATROUS_STR_(x)

// The operator namespace. Only the CPU emulation of the CUDA kernels (tests/cuda_emulation)
// changes it, to define the same schemas a second time under its own name.
#ifndef ATROUS_LIBRARY
#define ATROUS_LIBRARY atrous
#endif
#define ATROUS_TORCH_LIBRARY(ns, m) TORCH_LIBRARY(ns, m)  // expands ATROUS_LIBRARY first

ATROUS_TORCH_LIBRARY(ATROUS_LIBRARY, m) {
#ifndef ATROUS_CUDA_EMULATION
  // Fake kernels and autograd are registered in this Python module; the dispatcher names it
  // in errors when the op is used before it is imported.
  m.set_python_module("atrous.ops");
#endif

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
  // (csrc/common/algorithms.h), which depends on the device: atrous.ops.algorithms(name, device)
  // lists them.

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

// {op name: ladder} for one device.
template <size_t D, size_t P, size_t G>
PyObject* ladders(const std::array<std::string_view, D>& dw, const std::array<std::string_view, P>& pw,
                  const std::array<std::string_view, G>& dense) {
  PyObject* dict = PyDict_New();
  const std::pair<const char*, PyObject*> items[] = {
      {"depthwise_conv2d", name_tuple(dw)}, {"pointwise_conv2d", name_tuple(pw)}, {"atrous_conv2d", name_tuple(dense)}};
  for (const auto& [name, tuple] : items) {
    PyDict_SetItemString(dict, name, tuple);
    Py_DECREF(tuple);
  }
  return dict;
}

PyObject* int_tuple(std::initializer_list<int64_t> values) {
  PyObject* tuple = PyTuple_New(static_cast<Py_ssize_t>(values.size()));
  Py_ssize_t i = 0;
  for (int64_t v : values) PyTuple_SET_ITEM(tuple, i++, PyLong_FromLongLong(v));
  return tuple;
}

// _C._conv_index(name, *ints): calls one helper of csrc/common/conv_index.h, the index arithmetic
// the CPU and CUDA kernels share, so the CPU test suite checks it against brute force
// (tests/test_conv_index.py) on machines with no GPU. Ranges and tiles come back as tuples.
PyObject* conv_index(PyObject*, PyObject* args) {
  const Py_ssize_t n = PyTuple_Size(args);
  if (n < 1 || !PyUnicode_Check(PyTuple_GET_ITEM(args, 0))) {
    PyErr_SetString(PyExc_TypeError, "_conv_index: expected (name, *ints)");
    return nullptr;
  }
  const std::string name = PyUnicode_AsUTF8(PyTuple_GET_ITEM(args, 0));
  std::vector<int64_t> a;
  for (Py_ssize_t i = 1; i < n; ++i) {
    a.push_back(PyLong_AsLongLong(PyTuple_GET_ITEM(args, i)));
    if (PyErr_Occurred()) return nullptr;
  }
  auto arity = [&](size_t k) {
    if (a.size() == k) return true;
    PyErr_Format(PyExc_TypeError, "_conv_index: %s takes %d ints, got %d", name.c_str(), int(k), int(a.size()));
    return false;
  };
  using namespace atrous;
  if (name == "floor_div" && arity(2)) return PyLong_FromLongLong(floor_div(a[0], a[1]));
  if (name == "ceil_div" && arity(2)) return PyLong_FromLongLong(ceil_div(a[0], a[1]));
  if (name == "conv_output_size" && arity(5)) return PyLong_FromLongLong(conv_output_size(a[0], a[1], a[2], a[3], a[4]));
  if (name == "input_index" && arity(5)) return PyLong_FromLongLong(input_index(a[0], a[1], a[2], a[3], a[4]));
  if (name == "tap_output_range" && arity(6)) {
    const Range r = tap_output_range(a[0], a[1], a[2], a[3], a[4], a[5]);
    return int_tuple({r.begin, r.end});
  }
  if (name == "output_tap_range" && arity(6)) {
    const Range r = output_tap_range(a[0], a[1], a[2], a[3], a[4], a[5]);
    return int_tuple({r.begin, r.end});
  }
  if (name == "input_tile_extent" && arity(4)) return PyLong_FromLongLong(input_tile_extent(a[0], a[1], a[2], a[3]));
  if (name == "halo_extent" && arity(2)) return PyLong_FromLongLong(halo_extent(a[0], a[1]));
  if (name == "tap_source_output" && arity(6)) {
    return PyLong_FromLongLong(tap_source_output(a[0], a[1], a[2], a[3], a[4], a[5]));
  }
  if (name == "balanced_tiles" && arity(2)) {
    const TileAxis t = balanced_tiles(a[0], a[1]);
    return int_tuple({t.size, t.count});
  }
  if (name == "tile_range" && arity(3)) {
    const Range r = tile_range(a[0], a[1], a[2]);
    return int_tuple({r.begin, r.end});
  }
  if (name == "plan_depthwise_tiles" && arity(12)) {
    const DepthwiseTilePlan p =
        plan_depthwise_tiles(a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7], a[8], a[9], a[10], a[11]);
    return int_tuple({p.rows.size, p.rows.count, p.cols.size, p.cols.count, p.in_h, p.in_w, p.fits});
  }
  if (!PyErr_Occurred()) PyErr_Format(PyExc_ValueError, "_conv_index: unknown helper '%s'", name.c_str());
  return nullptr;
}

PyMethodDef module_methods[] = {
    {"_conv_index", conv_index, METH_VARARGS, "Calls a helper of csrc/common/conv_index.h (for the tests)."},
    {nullptr, nullptr, 0, nullptr},
};

PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C",
                          "atrous._C: the compiled atrous kernels (importing it registers the "
                          "operators under torch.ops.atrous)",
                          -1, module_methods};

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
  // The kernel ladders by device ("cpu", "cuda") then op, read by atrous.ops.algorithms(). The
  // CUDA ladders are listed even in a CPU-only build: they name what the CUDA kernels offer.
  PyObject* algorithms = PyDict_New();
  PyObject* cpu = ladders(atrous::kDepthwiseAlgorithms, atrous::kPointwiseAlgorithms, atrous::kDenseAlgorithms);
  PyObject* cuda = ladders(atrous::kDepthwiseCudaAlgorithms, atrous::kPointwiseCudaAlgorithms,
                           atrous::kDenseCudaAlgorithms);
  PyDict_SetItemString(algorithms, "cpu", cpu);
  PyDict_SetItemString(algorithms, "cuda", cuda);
  Py_DECREF(cpu);
  Py_DECREF(cuda);
  PyModule_AddObject(module, "algorithms", algorithms);  // steals the reference
  return module;
}
