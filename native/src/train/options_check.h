// Validation of TrainOptions before any model work: every refusal is a
// std::invalid_argument whose message starts with the option's name, so the
// Node layer (which checks the same rules first) and the C++ tests see one wording.
#pragma once

#include "sdxl/engine.h" // TrainOptions

namespace sdxl::train {

void check_train_options(const TrainOptions& options);

} // namespace sdxl::train
