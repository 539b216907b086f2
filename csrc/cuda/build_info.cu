// What nvcc compiled (CUDA runtime version, target architectures), reported by `python -m atrous.info`.
//
// The kernels are in the *_kernels.cu files beside it; their host halves (*.cpp) register the
// operators. __CUDA_ARCH_LIST__ is the list of architectures nvcc compiled for (e.g. 750,800,900).
#include <cuda_runtime_api.h>

#include "../common/conv_index.h"

// Variadic: with several architectures __CUDA_ARCH_LIST__ expands to "750,800,900", which a
// one-parameter macro would receive as three arguments (a build error).
#define ATROUS_STR_(...) #__VA_ARGS__
#define ATROUS_STR(...) ATROUS_STR_(__VA_ARGS__)

#ifndef __CUDA_ARCH_LIST__
#define __CUDA_ARCH_LIST__ unknown
#endif

// Uses the shared index helpers in device code, so a helper that stops being
// __host__ __device__-clean fails the build here rather than in a later kernel.
__global__ void atrous_index_helpers_device_probe(int64_t* out) {
  const atrous::Range r = atrous::tap_output_range(33, 33, 1, 6, 6, 0);
  const atrous::Range t = atrous::output_tap_range(33, 3, 1, 6, 6, 0);
  out[0] = r.begin + t.begin + atrous::input_tile_extent(32, 3, 1, 6) +
           atrous::conv_output_size(33, 3, 1, 6, 6);
}

const char* atrous_cuda_build_info() {
  return "cudart " ATROUS_STR(CUDART_VERSION) ", archs " ATROUS_STR(__CUDA_ARCH_LIST__);
}
