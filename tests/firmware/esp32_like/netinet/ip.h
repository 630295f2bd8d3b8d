#pragma once
// For the ESP32-like compile check (../README.md).
#include <netinet/in.h>
