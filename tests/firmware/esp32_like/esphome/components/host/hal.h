#pragma once
// The platform HAL for the ESP32-like compile check (../../../README.md), in place of
// ESPHome's host HAL: the same functions with the types ESP-IDF gives them (uint32_t is
// long unsigned int with this toolchain). Declarations only.

#include <cstdint>

#define IRAM_ATTR __attribute__((section(".iram1")))
#define PROGMEM

namespace esphome {

inline bool in_isr_context() { return false; }
void yield();
void delay(uint32_t ms);
uint32_t micros();
uint32_t millis();
uint64_t millis_64();
void delayMicroseconds(uint32_t us);  // NOLINT(readability-identifier-naming)
uint32_t arch_get_cpu_cycle_count();
void arch_init();
void arch_feed_wdt();
uint32_t arch_get_cpu_freq_hz();

}  // namespace esphome
