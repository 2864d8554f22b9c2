// Test helpers: fixture paths and tensor comparison that prints the worst element.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <string>

#include "core/tensor.h"

namespace qwen3vl::test {

inline std::filesystem::path source_dir() { return QWEN3VL_SOURCE_DIR; }
inline std::filesystem::path shared_dir() { return QWEN3VL_SHARED_DIR; }
inline std::filesystem::path fixtures_dir() { return source_dir() / "tests" / "fixtures"; }
inline std::filesystem::path binary_dir() { return QWEN3VL_BINARY_DIR; }

struct CompareResult {
  double max_abs_diff = 0;  // max |ours - ref|
  double max_abs_ref = 0;   // max |ref|
  int64_t worst = -1;       // flat index of the worst element
  double ours_at_worst = 0, ref_at_worst = 0;
};

inline CompareResult compare_tensors(const Tensor& ours, const Tensor& ref) {
  CompareResult r;
  const int64_t n = ref.numel();
  for (int64_t i = 0; i < n; ++i) {
    double a = ours.item(i), b = ref.item(i);
    r.max_abs_ref = std::max(r.max_abs_ref, std::fabs(b));
    double d = std::fabs(a - b);
    if (std::isnan(a) != std::isnan(b)) d = INFINITY;
    if (d > r.max_abs_diff || r.worst < 0) {
      if (d > r.max_abs_diff) r.max_abs_diff = d;
      if (d >= r.max_abs_diff) { r.worst = i; r.ours_at_worst = a; r.ref_at_worst = b; }
    }
  }
  return r;
}

// Asserts shapes are equal and max|ours - ref| <= rel_tol * max|ref| (+ abs_tol); prints the
// worst element either way, so a passing run still reports its margin.
inline void expect_close(const std::string& name, const Tensor& ours, const Tensor& ref, double rel_tol,
                         double abs_tol = 0.0) {
  ASSERT_EQ(ours.shape(), ref.shape()) << name << ": ours " << ours.str() << " vs reference " << ref.str();
  CompareResult r = compare_tensors(ours, ref);
  double bound = rel_tol * r.max_abs_ref + abs_tol;
  std::printf("[compare] %-28s %-18s max|diff| %.3e  max|ref| %.3e  rel %.3e  (bound %.3e) worst #%lld ours %.7g ref %.7g\n",
              name.c_str(), shape_str(ref.shape()).c_str(), r.max_abs_diff, r.max_abs_ref,
              r.max_abs_ref > 0 ? r.max_abs_diff / r.max_abs_ref : 0.0, bound, static_cast<long long>(r.worst),
              r.ours_at_worst, r.ref_at_worst);
  EXPECT_LE(r.max_abs_diff, bound) << name << ": worst element #" << r.worst << " ours " << r.ours_at_worst
                                   << " reference " << r.ref_at_worst;
}

// Exact equality (integer tensors, pixel values): prints the first mismatch.
inline void expect_equal(const std::string& name, const Tensor& ours, const Tensor& ref) {
  ASSERT_EQ(ours.shape(), ref.shape()) << name << ": ours " << ours.str() << " vs reference " << ref.str();
  for (int64_t i = 0; i < ref.numel(); ++i) {
    if (ours.item(i) != ref.item(i)) {
      ADD_FAILURE() << name << ": first mismatch at #" << i << " ours " << ours.item(i) << " reference " << ref.item(i);
      return;
    }
  }
}

}  // namespace qwen3vl::test
