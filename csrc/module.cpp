// The Python module atrous._C: its init, the build information and the exported ladders.
//
// `import atrous._C` loads this library, which runs the operator registrations (csrc/ops.cpp,
// csrc/cpu/*.cpp, csrc/cuda/*.cpp); PyInit__C then fills the module with what Python reads:
//   operators                          the schema names of csrc/ops.cpp (atrous.buildinfo)
//   algorithms, algorithm_files        the kernel ladders of csrc/common/algorithms.h (atrous.ops)
//   build_torch_version, with_cuda, cuda_build_info, with_openmp, cpu_arch_flags
//                                      the build configuration (`python -m atrous.info`)
//   cpu_isa()                          the CPU instruction sets: compiled, supported, in use (cpu/isa.h)
//   _conv_index, _set_cpu_isa          test hooks (csrc/testing.cpp)
// It also reads ATROUS_CPU_ISA: an instruction set this CPU cannot run makes the import fail.
#include <Python.h>

#include <array>
#include <cstddef>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/algorithms.h"
#include "cpu/isa.h"
#include "ops.h"
#include "testing.h"

#define ATROUS_STR_(x) #x
#define ATROUS_STR(x) ATROUS_STR_(x)

#ifdef ATROUS_WITH_CUDA
// Defined in csrc/cuda/build_info.cu, compiled by nvcc, so it reports what nvcc built.
const char* atrous_cuda_build_info();
#endif

namespace atrous {
namespace {

PyObject* string(std::string_view s) {
  return PyUnicode_FromStringAndSize(s.data(), static_cast<Py_ssize_t>(s.size()));
}

// Sets dict[key] = value and drops our reference to value.
void set_item(PyObject* dict, const char* key, PyObject* value) {
  PyDict_SetItemString(dict, key, value);
  Py_DECREF(value);
}

// ("depthwise_conv2d", ...): the operator names, in the order of the schema file.
PyObject* operator_names() {
  const std::span<const std::string_view> schemas = operator_schemas();
  PyObject* tuple = PyTuple_New(static_cast<Py_ssize_t>(schemas.size()));
  for (size_t i = 0; i < schemas.size(); ++i) PyTuple_SET_ITEM(tuple, i, string(schema_name(schemas[i])));
  return tuple;
}

// The rung names of a ladder as a tuple, or {name: file} with files=true.
template <size_t N>
PyObject* ladder(const std::array<LadderRung, N>& rungs, bool files) {
  if (files) {
    PyObject* dict = PyDict_New();
    for (const LadderRung& rung : rungs) {
      PyObject* name = string(rung.name);
      PyObject* file = string(rung.file);
      PyDict_SetItem(dict, name, file);  // takes references of its own
      Py_DECREF(name);
      Py_DECREF(file);
    }
    return dict;
  }
  PyObject* tuple = PyTuple_New(N);
  for (size_t i = 0; i < N; ++i) PyTuple_SET_ITEM(tuple, i, string(rungs[i].name));
  return tuple;
}

// {"cpu": {op name: ladder}, "cuda": {...}}. The CUDA ladders are listed even in a CPU-only
// build: they name what the CUDA kernels offer.
PyObject* ladders(bool files) {
  PyObject* cpu = PyDict_New();
  set_item(cpu, "depthwise_conv2d", ladder(kDepthwiseAlgorithms, files));
  set_item(cpu, "pointwise_conv2d", ladder(kPointwiseAlgorithms, files));
  set_item(cpu, "atrous_conv2d", ladder(kDenseAlgorithms, files));
  PyObject* cuda = PyDict_New();
  set_item(cuda, "depthwise_conv2d", ladder(kDepthwiseCudaAlgorithms, files));
  set_item(cuda, "pointwise_conv2d", ladder(kPointwiseCudaAlgorithms, files));
  set_item(cuda, "atrous_conv2d", ladder(kDenseCudaAlgorithms, files));
  PyObject* devices = PyDict_New();
  set_item(devices, "cpu", cpu);
  set_item(devices, "cuda", cuda);
  return devices;
}

// The configuration the compiler saw, so `python -m atrous.info` reports what was compiled.
void add_build_info(PyObject* module) {
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
}

PyObject* isa_list(const std::vector<cpu::Isa>& isas) {
  PyObject* list = PyList_New(static_cast<Py_ssize_t>(isas.size()));
  for (size_t i = 0; i < isas.size(); ++i) PyList_SET_ITEM(list, i, string(cpu::isa_name(isas[i])));
  return list;
}

// cpu_isa() -> {"compiled": [...], "supported": [...], "active": "avx2", "reason": "..."}
PyObject* cpu_isa(PyObject*, PyObject*) {
  PyObject* dict = PyDict_New();
  set_item(dict, "compiled", isa_list(cpu::compiled_isas()));
  set_item(dict, "supported", isa_list(cpu::supported_isas()));
  set_item(dict, "active", string(cpu::isa_name(cpu::active_isa())));
  set_item(dict, "reason", string(cpu::isa_reason()));
  return dict;
}

PyMethodDef module_methods[] = {
    {"cpu_isa", cpu_isa, METH_NOARGS,
     "The CPU instruction sets: compiled, supported by this CPU, the one in use and why."},
    {nullptr, nullptr, 0, nullptr},
};

PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C",
                          "atrous._C: the compiled atrous kernels (importing it registers the "
                          "operators under torch.ops.atrous)",
                          -1, nullptr};

}  // namespace
}  // namespace atrous

extern "C" PyMODINIT_FUNC PyInit__C(void) {
  const std::string isa_error = atrous::cpu::init_isa_from_env();
  if (!isa_error.empty()) {
    PyErr_SetString(PyExc_RuntimeError, isa_error.c_str());
    return nullptr;
  }
  PyObject* module = PyModule_Create(&atrous::module_def);
  if (module == nullptr) return nullptr;
  if (atrous::testing::add_functions(module) < 0 || PyModule_AddFunctions(module, atrous::module_methods) < 0) {
    Py_DECREF(module);
    return nullptr;
  }
  atrous::add_build_info(module);
  PyModule_AddObject(module, "operators", atrous::operator_names());  // steals the reference
  PyModule_AddObject(module, "algorithms", atrous::ladders(/*files=*/false));
  PyModule_AddObject(module, "algorithm_files", atrous::ladders(/*files=*/true));
  return module;
}
