// Every header the per-ISA kernel cores use, included before a wrapper's target region.
//
// Code from these headers (the standard library, torch's parallel loop) must be compiled for the
// baseline: its inline functions are emitted in every translation unit and the linker keeps one
// copy, which would otherwise be an AVX-512 copy that a generic caller might reach. Functions
// defined inside the target region get the wider instruction set; these may be inlined into
// them, never the other way round. tests/extension/test_isa.py checks the result with objdump.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>
#include <utility>
#include <vector>

#include "../common/conv_index.h"
#include "depthwise_rungs.h"
#include "gemm.h"
#include "kernel_support.h"
