// Which instruction sets were compiled, which this CPU runs, and the one in use (see isa.h).
#include "isa.h"

#include <atomic>
#include <cstdlib>
#include <mutex>

namespace atrous::cpu {
namespace {

std::atomic<int> g_active{-1};  // -1: not chosen yet
std::mutex g_reason_mutex;
std::string g_reason;

bool cpu_runs(Isa isa) {
  switch (isa) {
    case Isa::generic: return true;
#if defined(__x86_64__) || defined(_M_X64)
    // __builtin_cpu_supports also checks that the OS saves the wide registers (XCR0).
    case Isa::avx2: return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    case Isa::avx512:
      return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
             __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
             __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#endif
#if defined(__aarch64__)
    case Isa::neon: return true;  // Advanced SIMD is part of every ARMv8-A core
#endif
    default: return false;
  }
}

std::string join(const std::vector<Isa>& isas) {
  std::string s;
  for (Isa isa : isas) s += (s.empty() ? "" : ", ") + std::string(isa_name(isa));
  return s;
}

}  // namespace

std::string_view isa_name(Isa isa) {
  switch (isa) {
    case Isa::generic: return "generic";
    case Isa::avx2: return "avx2";
    case Isa::avx512: return "avx512";
    case Isa::neon: return "neon";
  }
  return "?";
}

std::vector<Isa> compiled_isas() {
#if defined(__x86_64__) || defined(_M_X64)
  return {Isa::generic, Isa::avx2, Isa::avx512};
#elif defined(__aarch64__)
  return {Isa::generic, Isa::neon};
#else
  return {Isa::generic};
#endif
}

std::vector<Isa> supported_isas() {
  std::vector<Isa> out;
  for (Isa isa : compiled_isas())
    if (cpu_runs(isa)) out.push_back(isa);
  return out;
}

Isa active_isa() {
  int isa = g_active.load(std::memory_order_relaxed);
  if (isa < 0) {  // first use before the module init chose (a C++ caller): take the best
    isa = static_cast<int>(supported_isas().back());
    g_active.store(isa, std::memory_order_relaxed);
  }
  return static_cast<Isa>(isa);
}

std::string isa_reason() {
  std::lock_guard<std::mutex> lock(g_reason_mutex);
  return g_reason.empty() ? "best this CPU supports" : g_reason;
}

std::string set_isa(std::string_view name, std::string_view what, std::string reason) {
  const std::vector<Isa> compiled = compiled_isas();
  for (Isa isa : compiled) {
    if (isa_name(isa) != name) continue;
    if (!cpu_runs(isa)) {
      return std::string(what) + "=" + std::string(name) + ": this CPU cannot run the " +
             std::string(name) + " kernels (it runs: " + join(supported_isas()) + ")";
    }
    g_active.store(static_cast<int>(isa), std::memory_order_relaxed);
    std::lock_guard<std::mutex> lock(g_reason_mutex);
    g_reason = std::move(reason);
    return "";
  }
  return std::string(what) + "=" + std::string(name) + ": unknown instruction set (this build has: " +
         join(compiled) + ")";
}

std::string init_isa_from_env() {
  const char* value = std::getenv("ATROUS_CPU_ISA");
  const std::string name = value ? value : "";
  if (name.empty() || name == "auto" || name == "best") {
    g_active.store(static_cast<int>(supported_isas().back()), std::memory_order_relaxed);
    std::lock_guard<std::mutex> lock(g_reason_mutex);
    g_reason = "best this CPU supports";
    return "";
  }
  return set_isa(name, "ATROUS_CPU_ISA", "ATROUS_CPU_ISA=" + name);
}

}  // namespace atrous::cpu
