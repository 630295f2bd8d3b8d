#include "dx_probe.h"

#include <cstdlib>
#include <cstring>
#include <map>
#include <malloc.h>

#include "esphome/core/log.h"

#if defined(__SANITIZE_ADDRESS__)
// From the sanitizer runtime (sanitizer/allocator_interface.h, not shipped with every gcc).
extern "C" size_t __sanitizer_get_current_allocated_bytes();  // NOLINT
#endif

namespace esphome::dx_probe {

static const char *const TAG = "dx_probe";

// Kept out of the optimiser's sight, so each self-test really does what it says.
static volatile int g_sink;          // NOLINT
static char *volatile g_leaked;      // NOLINT
static volatile int g_big = 0x7fffffff;  // NOLINT

static void selftest(const char *kind) {
  ESP_LOGW(TAG, "Sanitizer self-test: %s", kind);
  if (strcmp(kind, "address") == 0) {
    char *block = static_cast<char *>(malloc(8));
    g_sink = block[8];  // heap-buffer-overflow
    free(block);
  } else if (strcmp(kind, "undefined") == 0) {
    int value = g_big;
    g_sink = value + 1;  // signed integer overflow
  } else if (strcmp(kind, "leak") == 0) {
    g_leaked = static_cast<char *>(malloc(64));
    g_leaked = nullptr;  // unreachable from now on: reported at exit
  }
}

void DxProbe::setup() {
  this->register_service(&DxProbe::on_heap, "dx_probe_heap");
  const char *kind = getenv("DX_PROBE_SELFTEST");
  if (kind != nullptr)
    selftest(kind);
}

void DxProbe::on_heap() {
  std::map<std::string, std::string> data;
#if defined(__SANITIZE_ADDRESS__)
  data["bytes"] = std::to_string(__sanitizer_get_current_allocated_bytes());
  data["source"] = "asan";
#else
  struct mallinfo2 info = mallinfo2();
  data["bytes"] = std::to_string(info.uordblks);
  data["source"] = "mallinfo2";
#endif
  this->fire_homeassistant_event("esphome.dx_probe_heap", data);
}

}  // namespace esphome::dx_probe
