#pragma once
// Forced include of the ESP32-like compile check (README.md): declarations the ESP32's
// newlib has and this toolchain's C library (picolibc) lacks.
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif
char *strcasestr(const char *haystack, const char *needle);
#ifdef __cplusplus
}
#endif
