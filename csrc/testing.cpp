// Test hooks of atrous._C: _conv_index exposes the shared index arithmetic to the test suite;
// _set_cpu_isa(name) switches the CPU kernels to another instruction set (cpu/isa.h), so the
// property tests run on every path this machine supports without re-importing.
//
// _C._conv_index(name, *ints) calls one helper of csrc/common/conv_index.h, the index arithmetic
// the CPU and CUDA kernels share, so the CPU test suite checks it against brute force
// (tests/ops/test_conv_index.py) on machines with no GPU, and tutorial 03 calls it.
#include "testing.h"

#include <initializer_list>
#include <string>
#include <vector>

#include "common/conv_index.h"
#include "cpu/isa.h"

namespace atrous::testing {
namespace {

PyObject* int_tuple(std::initializer_list<int64_t> values) {
  PyObject* tuple = PyTuple_New(static_cast<Py_ssize_t>(values.size()));
  Py_ssize_t i = 0;
  for (int64_t v : values) PyTuple_SET_ITEM(tuple, i++, PyLong_FromLongLong(v));
  return tuple;
}

// Ranges and tiles come back as tuples.
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
  if (name == "floor_div" && arity(2)) return PyLong_FromLongLong(floor_div(a[0], a[1]));
  if (name == "ceil_div" && arity(2)) return PyLong_FromLongLong(ceil_div(a[0], a[1]));
  if (name == "conv_output_size" && arity(5))
    return PyLong_FromLongLong(conv_output_size(a[0], a[1], a[2], a[3], a[4]));
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

PyObject* set_cpu_isa(PyObject*, PyObject* arg) {
  if (!PyUnicode_Check(arg)) {
    PyErr_SetString(PyExc_TypeError, "_set_cpu_isa: expected the name of an instruction set (a str)");
    return nullptr;
  }
  const std::string name = PyUnicode_AsUTF8(arg);
  const std::string error = cpu::set_isa(name, "_set_cpu_isa", "atrous._C._set_cpu_isa('" + name + "')");
  if (!error.empty()) {
    PyErr_SetString(PyExc_ValueError, error.c_str());
    return nullptr;
  }
  Py_RETURN_NONE;
}

PyMethodDef methods[] = {
    {"_set_cpu_isa", set_cpu_isa, METH_O, "Switches the CPU kernels to another instruction set (for the tests)."},
    {"_conv_index", conv_index, METH_VARARGS, "Calls a helper of csrc/common/conv_index.h (for the tests)."},
    {nullptr, nullptr, 0, nullptr},
};

}  // namespace

int add_functions(PyObject* module) { return PyModule_AddFunctions(module, methods); }

}  // namespace atrous::testing
