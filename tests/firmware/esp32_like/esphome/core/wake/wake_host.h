#pragma once
// The main loop's wake-up for the ESP32-like compile check (../../../../README.md), in
// place of ESPHome's host version (select() on sockets). Declarations only.

#include <cstdint>

#include "esphome/core/defines.h"

namespace esphome {

void wake_loop_threadsafe();
inline void wake_loop_any_context() { wake_loop_threadsafe(); }
bool wake_register_fd(int fd);
void wake_unregister_fd(int fd);
void wake_setup();
bool wake_fd_ready(int fd);
void wake_drain_notifications();

namespace internal {
void wakeable_delay(uint32_t ms);
}  // namespace internal

}  // namespace esphome
