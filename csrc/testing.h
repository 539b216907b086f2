// Test hooks of atrous._C: functions the test suite calls that no user-facing op needs.
#pragma once

#include <Python.h>

namespace atrous::testing {

// Adds the test hooks (atrous._C._conv_index) to `module`; returns 0, or -1 with a Python error.
int add_functions(PyObject* module);

}  // namespace atrous::testing
