// Tolerances of the golden-fixture check (engine.h's verify()).
//
// float32 runs use the fixture's own bounds on max |diff|: 1e-5 for text
// encoders and scheduler tables, 1e-4 for UNet, VAE, pipeline, LoRA and
// training outputs (multi-step latents: relative to their magnitude, below),
// and exact equality for token ids.
//
// float16 / bfloat16 runs round every op output, so the bound grows with the
// unit roundoff u of the dtype (2^-11 for float16, 2^-8 for bfloat16) and the
// magnitude of the reference: max(float32 bound, kReducedPrecisionUlps * u *
// max|reference|). The fixture's extra_golden measured the UNet at
// max |diff| = 3.3e-3 (float16) and 2.7e-2 (bfloat16) on outputs of max 1.55,
// i.e. about 4.4 u * max|ref| for both; kReducedPrecisionUlps
// leaves room for an independent kernel stack and for the error growth of a
// few sampler steps. Scheduler tables are always computed in float32 and keep
// their float32 bound.
#pragma once

#include <string>

#include <torch/torch.h> // torch::Dtype

namespace sdxl {

inline constexpr double kTextTolerance = 1e-5;      // text encoders, scheduler tables
inline constexpr double kModelTolerance = 1e-4;     // UNet, VAE, pipeline, LoRA, training
inline constexpr double kReducedPrecisionUlps = 16; // see above
// Multi-step pipeline latents carry the UNet's float32 rounding through guidance and
// sigma: SD 1.5's fixture measured float64 against its float32 golden at 1.0e-4 on latents
// of max 48 (2.1e-6 relative). Their bound is max(kModelTolerance, this * max|ref|),
// which leaves SDXL's (max 15) at kModelTolerance.
inline constexpr double kLatentsRelativeTolerance = 5e-6;

// The bound on max |diff| for fixture tensor `name` computed in `dtype`,
// given the reference's largest magnitude.
double verify_tolerance(const std::string& name, torch::Dtype dtype, double reference_absmax);

} // namespace sdxl
