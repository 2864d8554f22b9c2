// Named-intermediate hook. Model code calls dump("vision.blocks.3", t) at each stage the HF
// reference harness also records (tools/reference/); `qwen3vl dump` collects them into a
// safetensors file so any stage can be diffed against HF. A null hook costs nothing.
#pragma once

#include <functional>
#include <string>

#include "core/tensor.h"

namespace qwen3vl {

using DumpHook = std::function<void(const std::string& name, const Tensor& t)>;

inline void dump(const DumpHook* hook, const std::string& name, const Tensor& t) {
  if (hook && *hook) (*hook)(name, t);
}

}  // namespace qwen3vl
