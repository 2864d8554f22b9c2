/* Memory read bandwidth with T threads: the ceiling for decode speed (every weight byte is read once
 * per generated token). Used by bench/compare_llamacpp.sh when `qwen3vl bench --json` has no
 * mem_bw_gbs field.
 *
 *   cc -O3 -march=native -fopenmp bench/membw.c -o membw && ./membw [threads=2] [MiB=1024] [reps=5] [FILE]
 *
 * Each thread sums its contiguous share of a buffer far larger than the last-level cache, 64 bytes
 * per iteration in 8 independent 64-bit lanes (vectorized by the compiler; odd passes also prefetch
 * 4 KiB ahead, as qwen3vl's decode GEMVs do); the result is the best of `reps` passes, in GB/s
 * (1e9 bytes). Pages are written once first so they are resident. Prints
 * one JSON line: {"threads":T,"mib":M,"best_gbs":..,"median_gbs":..}.
 *
 * With FILE (e.g. a GGUF model), the passes read FILE's pages through a read-only shared mapping
 * instead of a fresh buffer (MiB is ignored): after llama-bench has run on it, those are the page
 * cache pages llama.cpp's decode streamed, so the figure is the limit for exactly those bytes.
 */
#include <fcntl.h>
#include <omp.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int cmp(const void* a, const void* b) {
  double x = *(const double*)a, y = *(const double*)b;
  return (x > y) - (x < y);
}

int main(int argc, char** argv) {
  int threads = argc > 1 ? atoi(argv[1]) : 2;
  size_t mib = argc > 2 ? (size_t)atol(argv[2]) : 1024;
  int reps = argc > 3 ? atoi(argv[3]) : 5;
  const char* file = argc > 4 ? argv[4] : NULL;
  if (threads < 1 || (!file && mib < 16) || reps < 1 || reps > 100) {
    fprintf(stderr, "usage: membw [threads>=1] [MiB>=16] [reps 1..100] [FILE]\n");
    return 2;
  }
  omp_set_num_threads(threads);
  uint64_t* buf = NULL;
  size_t n = 0, map_bytes = 0;
  if (file) {
    int fd = open(file, O_RDONLY);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0 || st.st_size < 4096) {
      fprintf(stderr, "membw: cannot open %s (or under 4 KiB)\n", file);
      return 1;
    }
    map_bytes = (size_t)st.st_size;
    void* m = mmap(NULL, map_bytes, PROT_READ, MAP_SHARED, fd, 0);
    close(fd);
    if (m == MAP_FAILED) {
      fprintf(stderr, "membw: cannot map %s\n", file);
      return 1;
    }
    buf = (uint64_t*)m;
    n = map_bytes / sizeof(uint64_t);
    mib = map_bytes >> 20;
    reps += 1;  // the first pass maps the pages (and reads any not cached): dropped below
  } else {
    n = mib * 1024 * 1024 / sizeof(uint64_t);
    if (posix_memalign((void**)&buf, 4096, n * sizeof(uint64_t)) != 0) {
      fprintf(stderr, "membw: cannot allocate %zu MiB\n", mib);
      return 1;
    }
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; ++i) buf[i] = i * 0x9E3779B97F4A7C15ull;
  }
  double gbs[100];
  uint64_t sink = 0;
  for (int r = 0; r < reps; ++r) {
    double t0 = now();
    uint64_t total = 0;
#pragma omp parallel reduction(^ : total)
    {
      int t = omp_get_thread_num(), nt = omp_get_num_threads();
      size_t chunk = (n / 8 + nt - 1) / nt * 8;
      size_t b = (size_t)t * chunk, e = b + chunk < n ? b + chunk : n;
      uint64_t acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
      if (r % 2 == 1) {  // odd passes: software prefetch 4 KiB ahead, as qwen3vl's decode GEMVs do
        for (size_t i = b; i + 8 <= e; i += 8) {
          __builtin_prefetch(buf + i + 512, 0, 3);
          for (int k = 0; k < 8; ++k) acc[k] += buf[i + k];
        }
      } else {
        for (size_t i = b; i + 8 <= e; i += 8)
          for (int k = 0; k < 8; ++k) acc[k] += buf[i + k];
      }
      for (int k = 0; k < 8; ++k) total ^= acc[k];
    }
    double dt = now() - t0;
    sink ^= total;
    gbs[r] = (double)(n * sizeof(uint64_t)) / dt / 1e9;
  }
  double* g = gbs;
  if (file) {  // drop the mapping pass
    ++g;
    --reps;
  }
  double best = 0;
  for (int r = 0; r < reps; ++r) best = g[r] > best ? g[r] : best;
  qsort(g, (size_t)reps, sizeof(double), cmp);
  printf("{\"threads\": %d, \"mib\": %zu, \"reps\": %d, \"best_gbs\": %.2f, \"median_gbs\": %.2f, \"check\": %llu%s%s%s}\n",
         threads, mib, reps, best, g[reps / 2], (unsigned long long)(sink & 0xff), file ? ", \"file\": \"" : "",
         file ? file : "", file ? "\"" : "");
  if (file)
    munmap(buf, map_bytes);
  else
    free(buf);
  return 0;
}
