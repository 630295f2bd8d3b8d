#pragma once
// For the ESP32-like compile check (../README.md): ESP-IDF has a pthread layer; this
// toolchain's C library (picolibc) has none.
#include <stddef.h>
#ifdef __cplusplus
extern "C" {
#endif
typedef unsigned int pthread_t;
typedef unsigned int pthread_key_t;
pthread_t pthread_self(void);
int pthread_equal(pthread_t a, pthread_t b);
int pthread_key_create(pthread_key_t *key, void (*destructor)(void *));
void *pthread_getspecific(pthread_key_t key);
int pthread_setspecific(pthread_key_t key, const void *value);
int pthread_getname_np(pthread_t thread, char *name, size_t len);
#ifdef __cplusplus
}
#endif
