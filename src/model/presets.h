// Named model configurations: the published Qwen3-VL dense sizes (spec §1.2) and two tiny test
// configurations that exercise every feature (several vision blocks, 3 DeepStack taps, GQA,
// tied / untied embeddings, pos-embed tables smaller than a test image).
#pragma once

#include <string>
#include <vector>

#include "model/config.h"

namespace qwen3vl {

// "tiny", "tiny-b", "2b", "4b", "8b", "32b". Throws Error listing the known names otherwise.
Qwen3VLConfig preset_config(const std::string& name);
std::vector<std::string> preset_names();

}  // namespace qwen3vl
