// Runtime choice of the CPU instruction set the kernels run with (AVX-512, AVX2, generic, NEON).
//
// The kernel cores (isa_kernels.inc) are compiled once per instruction set, each copy in its own
// namespace (isa_generic.cpp, isa_avx2.cpp, isa_avx512.cpp, isa_neon.cpp); everything else is
// compiled for the baseline of the architecture (x86-64, ARMv8-A), so the library loads on any
// such machine. When the extension loads, the best set this CPU supports is chosen, or the one
// ATROUS_CPU_ISA names; the dispatchers (cpu_dispatch.cpp) call that copy.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace atrous::cpu {

enum class Isa : int { generic = 0, avx2 = 1, avx512 = 2, neon = 3 };

std::string_view isa_name(Isa isa);

// The sets compiled into this build, best last, and those of them this CPU can run.
std::vector<Isa> compiled_isas();
std::vector<Isa> supported_isas();

// The set in use, and why it was chosen ("ATROUS_CPU_ISA=avx2" or "best this CPU supports").
Isa active_isa();
std::string isa_reason();

// Reads ATROUS_CPU_ISA (called once, when the extension loads). Returns "" or a one-line error.
std::string init_isa_from_env();

// Switches to the set named `name` (the tests run every path this way); "" or a one-line error
// naming `what` (the variable or function the name came from).
std::string set_isa(std::string_view name, std::string_view what, std::string reason);

}  // namespace atrous::cpu
