#pragma once

// Measurement time (protocol 5, docs/protocol.md "Measurement time"): per point the node
// uptime (ms) at which its entity last published, sent as each value's age (frame key "w"),
// and the node's Unix time in ms (key "d") while a `time_id:` clock is valid.

#include <cstdint>
#include <string>
#include <vector>

#include "esphome/core/defines.h"
#ifdef USE_TIME
#include "esphome/components/time/real_time_clock.h"
#endif

namespace esphome::data_exchange {

class MeasurementClock {
 public:
#ifdef USE_TIME
  void set_time(time::RealTimeClock *time) { this->time_ = time; }
#endif
  /// One entry per point. A state published before this component was set up (a switch's
  /// restored state) has no publish time of its own: it counts from now.
  void add_point();
  /// The point's entity published a state.
  void stamp(size_t index);
  /// Starts a frame: ages are counted from this uptime (the frame's "u").
  uint64_t begin_frame();
  /// The uptime begin_frame() took (the frame's "u").
  uint64_t begin_frame_ms() const { return this->frame_ms_; }
  /// Appends the age of point `index` to `ages` (comma first unless it is the first field);
  /// `empty` for a point without a value (an empty field, as in "x").
  void append_age(size_t index, bool empty, bool first, std::string &ages) const;
  /// The node's Unix time in ms into `out`; false (out untouched) without a valid clock.
  bool unix_ms(std::string &out) const;
  bool has_time() const;

 protected:
  std::vector<uint64_t> published_ms_;  // millis_64() of the last publish, per point
  uint64_t frame_ms_{0};
#ifdef USE_TIME
  time::RealTimeClock *time_{nullptr};
#endif
};

}  // namespace esphome::data_exchange
