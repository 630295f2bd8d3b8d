#pragma once
// For the ESP32-like compile check (../README.md).
#include <netinet/in.h>
#ifdef __cplusplus
extern "C" {
#endif
const char *inet_ntop(int af, const void *src, char *dst, socklen_t size);
int inet_pton(int af, const char *src, void *dst);
in_addr_t inet_addr(const char *cp);
#ifdef __cplusplus
}
#endif
