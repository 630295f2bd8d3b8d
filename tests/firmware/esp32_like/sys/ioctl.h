#pragma once
// For the ESP32-like compile check (../README.md).
#ifdef __cplusplus
extern "C" {
#endif
#define FIONBIO 0x8004667e
#define FIONREAD 0x4004667f
int ioctl(int s, long cmd, ...);
#ifdef __cplusplus
}
#endif
