// The operator schemas of csrc/ops.cpp, for the module init to export their names.
#pragma once

#include <span>
#include <string_view>

namespace atrous {

// Every schema registered under torch.ops.atrous, in definition order, e.g.
// "conv2d_backward_bias(Tensor grad_output) -> Tensor".
std::span<const std::string_view> operator_schemas();

// The operator name of a schema: the text before its '('.
constexpr std::string_view schema_name(std::string_view schema) { return schema.substr(0, schema.find('(')); }

}  // namespace atrous
