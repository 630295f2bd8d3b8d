#pragma once

#include "esphome/core/component.h"

namespace esphome::dx_harness {

// Applies DX_NODE_PORT before the API server binds (see __init__.py).
class DxHarness : public Component {
 public:
  float get_setup_priority() const override { return setup_priority::BUS; }
  void setup() override;
};

}  // namespace esphome::dx_harness
