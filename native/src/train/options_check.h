// Validation of TrainOptions before any model work: every refusal is a
// std::invalid_argument whose message starts with the option's name, so the
// Node layer (which checks the same rules first) and the C++ tests see one wording.
#pragma once

#include "models/configs.h" // models::ModelFamily
#include "sdxl/engine.h"    // TrainOptions

namespace sdxl::train {

void check_train_options(const TrainOptions& options);

// The options only some families have: clip_skip (SD 1.x/2.x, at most the text encoder's
// layers) and text_encoder_2_lr (SDXL).
void check_family_options(const TrainOptions& options, models::ModelFamily family, int64_t text_encoder_layers);

} // namespace sdxl::train
