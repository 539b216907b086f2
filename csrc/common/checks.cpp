// Argument validation shared by every backend (see checks.h).
#include "checks.h"

#include <c10/util/Exception.h>

namespace atrous {
namespace {

const char* kind_weight_form(ConvKind kind) {
  switch (kind) {
    case ConvKind::Depthwise: return "(C*m, 1, kh, kw)";
    case ConvKind::Pointwise: return "(C_out, C, 1, 1)";
    case ConvKind::Dense: return "(C_out, C, kh, kw)";
  }
  return "?";
}

// The CUDA kernels also take the half types (accumulating in float32); the CPU kernels do not.
bool accepts_half_types(const at::Tensor& t) {
#ifdef ATROUS_CUDA_EMULATION
  return true;  // the CPU emulation of the CUDA kernels (tests/cuda/cuda_emulation) runs them on CPU tensors
#else
  return t.device().is_cuda();
#endif
}

void check_float_tensor(const char* op, const char* name, const at::Tensor& t) {
  TORCH_CHECK(t.defined(), op, ": expected ", name, " to be a tensor, got an undefined tensor");
  const auto dtype = t.scalar_type();
  if (accepts_half_types(t)) {
    TORCH_CHECK(dtype == at::kFloat || dtype == at::kDouble || dtype == at::kHalf ||
                    dtype == at::kBFloat16,
                op, ": expected ", name,
                " of dtype torch.float32, torch.float64, torch.float16 or torch.bfloat16, got ", dtype);
    return;
  }
  TORCH_CHECK(dtype == at::kFloat || dtype == at::kDouble, op, ": expected ", name,
              " of dtype torch.float32 or torch.float64, got ", dtype);
}

void check_4d(const char* op, const char* name, const at::Tensor& t, const char* form) {
  TORCH_CHECK(t.dim() == 4, op, ": expected ", name, " to be 4-D ", form, ", got a ", t.dim(),
              "-D tensor of shape ", t.sizes());
}

void check_matches(const char* op, const char* name, const at::Tensor& t, const char* ref_name,
                   const at::Tensor& ref) {
  TORCH_CHECK(t.scalar_type() == ref.scalar_type(), op, ": expected ", name,
              " to have the same dtype as ", ref_name, " (", ref.scalar_type(), "), got ",
              t.scalar_type());
  TORCH_CHECK(t.device() == ref.device(), op, ": expected ", name,
              " on the same device as ", ref_name, " (", ref.device(), "), got ", t.device());
}

void check_params(const char* op, ConvKind kind, at::IntArrayRef stride, at::IntArrayRef padding,
                  at::IntArrayRef dilation) {
  if (kind == ConvKind::Pointwise) return;  // fixed: stride 1, padding 0, dilation 1
  TORCH_CHECK(stride.size() == 2, op, ": expected stride to be a pair (sh, sw), got ", stride);
  TORCH_CHECK(padding.size() == 2, op, ": expected padding to be a pair (ph, pw), got ", padding);
  TORCH_CHECK(dilation.size() == 2, op, ": expected dilation to be a pair (dh, dw), got ",
              dilation);
  TORCH_CHECK(stride[0] >= 1 && stride[1] >= 1, op,
              ": expected stride >= 1 in both dimensions, got ", stride);
  TORCH_CHECK(dilation[0] >= 1 && dilation[1] >= 1, op,
              ": expected dilation >= 1 in both dimensions, got ", dilation);
  TORCH_CHECK(padding[0] >= 0 && padding[1] >= 0, op,
              ": expected padding >= 0 in both dimensions, got ", padding);
}

// Checks a weight shape against the input channels and fills the kernel and channel fields.
void check_weight_shape(const char* op, ConvKind kind, at::IntArrayRef w, int64_t in_channels,
                        ConvGeometry& g) {
  const char* form = kind_weight_form(kind);
  TORCH_CHECK(w.size() == 4, op, ": expected weight to be 4-D ", form, ", got shape ", w);
  TORCH_CHECK(w[0] >= 1 && w[2] >= 1 && w[3] >= 1, op, ": expected weight of shape ", form,
              " with positive C_out, kh and kw, got ", w);
  switch (kind) {
    case ConvKind::Depthwise:
      TORCH_CHECK(w[1] == 1 && w[0] % in_channels == 0, op, ": expected weight of shape ",
                  form, " = (", in_channels, "*m, 1, kh, kw) for an input with C=", in_channels,
                  " channels (m >= 1, the depth multiplier), got ", w);
      break;
    case ConvKind::Pointwise:
      TORCH_CHECK(w[1] == in_channels && w[2] == 1 && w[3] == 1, op,
                  ": expected weight of shape ", form, " = (C_out, ", in_channels,
                  ", 1, 1) for an input with C=", in_channels, " channels, got ", w);
      break;
    case ConvKind::Dense:
      TORCH_CHECK(w[1] == in_channels, op, ": expected weight of shape ", form, " = (C_out, ",
                  in_channels, ", kh, kw) for an input with C=", in_channels,
                  " channels, got ", w);
      break;
  }
  g.out_channels = w[0];
  g.kernel_h = w[2];
  g.kernel_w = w[3];
}

// Fills the spatial fields from the input size and parameters, rejecting a dilated kernel
// larger than the padded input with the same wording as F.conv2d.
void fill_spatial(const char* op, ConvKind kind, at::IntArrayRef input_size,
                  at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation,
                  ConvGeometry& g) {
  g.batch = input_size[0];
  g.in_channels = input_size[1];
  g.in_h = input_size[2];
  g.in_w = input_size[3];
  if (kind == ConvKind::Pointwise) {
    g.stride_h = g.stride_w = 1;
    g.pad_h = g.pad_w = 0;
    g.dil_h = g.dil_w = 1;
  } else {
    g.stride_h = stride[0];
    g.stride_w = stride[1];
    g.pad_h = padding[0];
    g.pad_w = padding[1];
    g.dil_h = dilation[0];
    g.dil_w = dilation[1];
  }
  const int64_t keff_h = effective_kernel_size(g.kernel_h, g.dil_h);
  const int64_t keff_w = effective_kernel_size(g.kernel_w, g.dil_w);
  const int64_t padded_h = g.in_h + 2 * g.pad_h;
  const int64_t padded_w = g.in_w + 2 * g.pad_w;
  TORCH_CHECK(padded_h >= keff_h && padded_w >= keff_w, op,
              ": Calculated padded input size per channel: (", padded_h, " x ", padded_w,
              "). Kernel size (dilated): (", keff_h, " x ", keff_w,
              "). Kernel size can't be greater than actual input size");
  g.out_h = conv_output_size(g.in_h, g.kernel_h, g.stride_h, g.pad_h, g.dil_h);
  g.out_w = conv_output_size(g.in_w, g.kernel_w, g.stride_w, g.pad_w, g.dil_w);
}

void check_input_size(const char* op, at::IntArrayRef input_size) {
  TORCH_CHECK(input_size.size() == 4, op, ": expected input_size (N, C, H, W), got ",
              input_size);
  TORCH_CHECK(input_size[0] >= 0 && input_size[1] >= 1 && input_size[2] >= 1 &&
                  input_size[3] >= 1,
              op, ": expected input_size (N, C, H, W) with N >= 0 and C, H, W >= 1, got ",
              input_size);
}

void check_grad_output_shape(const char* op, const at::Tensor& grad_output,
                             const ConvGeometry& g) {
  check_4d(op, "grad_output", grad_output, "(N, C_out, H_out, W_out)");
  const std::vector<int64_t> expected = {g.batch, g.out_channels, g.out_h, g.out_w};
  TORCH_CHECK(grad_output.sizes() == at::IntArrayRef(expected), op,
              ": expected grad_output of shape ", at::IntArrayRef(expected),
              " (the forward output's shape), got ", grad_output.sizes());
}

}  // namespace

namespace {
bool is_channels_last(const at::Tensor& t) {
  return t.defined() && t.dim() == 4 && !t.is_contiguous() && t.is_contiguous(at::MemoryFormat::ChannelsLast);
}
}  // namespace

at::MemoryFormat output_memory_format(const at::Tensor& t, const at::Tensor& weight) {
  return is_channels_last(t) || is_channels_last(weight) ? at::MemoryFormat::ChannelsLast
                                                          : at::MemoryFormat::Contiguous;
}

ConvGeometry check_forward(const char* op, ConvKind kind, const at::Tensor& input,
                           const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                           at::IntArrayRef stride, at::IntArrayRef padding,
                           at::IntArrayRef dilation) {
  check_float_tensor(op, "input", input);
  check_4d(op, "input", input, "(N, C, H, W)");
  TORCH_CHECK(input.size(1) >= 1 && input.size(2) >= 1 && input.size(3) >= 1, op,
              ": expected input (N, C, H, W) with C, H, W >= 1, got shape ", input.sizes());
  check_float_tensor(op, "weight", weight);
  check_matches(op, "weight", weight, "input", input);
  check_params(op, kind, stride, padding, dilation);
  ConvGeometry g{};
  check_weight_shape(op, kind, weight.sizes(), input.size(1), g);
  if (bias.has_value() && bias->defined()) {
    check_float_tensor(op, "bias", *bias);
    check_matches(op, "bias", *bias, "input", input);
    TORCH_CHECK(bias->dim() == 1 && bias->size(0) == g.out_channels, op,
                ": expected bias of shape (C_out,) = (", g.out_channels, ",), got ",
                bias->sizes());
  }
  fill_spatial(op, kind, input.sizes(), stride, padding, dilation, g);
  return g;
}

ConvGeometry check_backward_input(const char* op, ConvKind kind, const at::Tensor& grad_output,
                                  const at::Tensor& weight, at::IntArrayRef input_size,
                                  at::IntArrayRef stride, at::IntArrayRef padding,
                                  at::IntArrayRef dilation) {
  check_float_tensor(op, "grad_output", grad_output);
  check_float_tensor(op, "weight", weight);
  check_matches(op, "weight", weight, "grad_output", grad_output);
  check_params(op, kind, stride, padding, dilation);
  check_input_size(op, input_size);
  ConvGeometry g{};
  check_weight_shape(op, kind, weight.sizes(), input_size[1], g);
  fill_spatial(op, kind, input_size, stride, padding, dilation, g);
  check_grad_output_shape(op, grad_output, g);
  return g;
}

ConvGeometry check_backward_weight(const char* op, ConvKind kind, const at::Tensor& grad_output,
                                   const at::Tensor& input, at::IntArrayRef weight_size,
                                   at::IntArrayRef stride, at::IntArrayRef padding,
                                   at::IntArrayRef dilation) {
  check_float_tensor(op, "grad_output", grad_output);
  check_float_tensor(op, "input", input);
  check_matches(op, "input", input, "grad_output", grad_output);
  check_4d(op, "input", input, "(N, C, H, W)");
  check_input_size(op, input.sizes());
  check_params(op, kind, stride, padding, dilation);
  ConvGeometry g{};
  check_weight_shape(op, kind, weight_size, input.size(1), g);
  fill_spatial(op, kind, input.sizes(), stride, padding, dilation, g);
  check_grad_output_shape(op, grad_output, g);
  return g;
}

ConvGeometry check_pointwise_backward_input(const char* op, const at::Tensor& grad_output,
                                            const at::Tensor& weight) {
  check_float_tensor(op, "grad_output", grad_output);
  check_4d(op, "grad_output", grad_output, "(N, C_out, H_out, W_out)");
  check_float_tensor(op, "weight", weight);
  check_4d(op, "weight", weight, kind_weight_form(ConvKind::Pointwise));
  const auto s = grad_output.sizes();
  return check_backward_input(op, ConvKind::Pointwise, grad_output, weight,
                              {s[0], weight.size(1), s[2], s[3]}, {}, {}, {});
}

ConvGeometry check_pointwise_backward_weight(const char* op, const at::Tensor& grad_output,
                                             const at::Tensor& input) {
  check_float_tensor(op, "grad_output", grad_output);
  check_4d(op, "grad_output", grad_output, "(N, C_out, H_out, W_out)");
  check_float_tensor(op, "input", input);
  check_4d(op, "input", input, "(N, C, H, W)");
  return check_backward_weight(op, ConvKind::Pointwise, grad_output, input,
                               {grad_output.size(1), input.size(1), 1, 1}, {}, {}, {});
}

ConvGeometry check_separable(const char* op, const at::Tensor& input, const at::Tensor& dw_weight,
                             const std::optional<at::Tensor>& dw_bias, const at::Tensor& pw_weight,
                             const std::optional<at::Tensor>& pw_bias, at::IntArrayRef stride,
                             at::IntArrayRef padding, at::IntArrayRef dilation,
                             std::string_view activation) {
  ConvGeometry g = check_forward(op, ConvKind::Depthwise, input, dw_weight, dw_bias, stride, padding, dilation);
  check_float_tensor(op, "pw_weight", pw_weight);
  check_matches(op, "pw_weight", pw_weight, "input", input);
  TORCH_CHECK(pw_weight.dim() == 4 && pw_weight.size(0) >= 1 && pw_weight.size(1) == g.out_channels &&
                  pw_weight.size(2) == 1 && pw_weight.size(3) == 1,
              op, ": expected pw_weight of shape (C_out, ", g.out_channels,
              ", 1, 1) after a depthwise stage with ", g.out_channels, " channels, got ", pw_weight.sizes());
  if (pw_bias.has_value() && pw_bias->defined()) {
    check_float_tensor(op, "pw_bias", *pw_bias);
    check_matches(op, "pw_bias", *pw_bias, "input", input);
    TORCH_CHECK(pw_bias->dim() == 1 && pw_bias->size(0) == pw_weight.size(0), op,
                ": expected pw_bias of shape (C_out,) = (", pw_weight.size(0), ",), got ", pw_bias->sizes());
  }
  TORCH_CHECK(activation == "none" || activation == "relu", op,
              ": expected activation to be 'none' or 'relu', got '", std::string(activation), "'");
  return g;
}

void check_backward_bias(const char* op, const at::Tensor& grad_output) {
  check_float_tensor(op, "grad_output", grad_output);
  check_4d(op, "grad_output", grad_output, "(N, C_out, H_out, W_out)");
}

}  // namespace atrous
