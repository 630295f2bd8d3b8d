#pragma once

#include <string>

#include "esphome/components/api/custom_api_device.h"
#include "esphome/core/component.h"

namespace esphome::dx_probe {

// Heap figures and sanitizer self-tests for host test nodes (see __init__.py).
class DxProbe : public Component, public api::CustomAPIDevice {
 public:
  float get_setup_priority() const override { return setup_priority::AFTER_CONNECTION; }
  void setup() override;
  void on_heap();
};

}  // namespace esphome::dx_probe
