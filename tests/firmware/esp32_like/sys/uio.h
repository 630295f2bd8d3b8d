#pragma once
// For the ESP32-like compile check (../README.md).
#include <stddef.h>
#include <sys/types.h>
#ifdef __cplusplus
extern "C" {
#endif
struct iovec {
  void *iov_base;
  size_t iov_len;
};
ssize_t readv(int s, const struct iovec *iov, int iovcnt);
ssize_t writev(int s, const struct iovec *iov, int iovcnt);
#ifdef __cplusplus
}
#endif
