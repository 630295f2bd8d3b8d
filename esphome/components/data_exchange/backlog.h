#pragma once

// Store-and-forward (docs/protocol.md, "Backlog"): while no Data Exchange client takes
// live frames, every publish of a covered point is kept as a reading in a ring buffer of a
// fixed size, allocated once at setup. When a client is back (after its first desired
// frame) the readings go out in backlog frames, a bounded chunk per main-loop pass and at
// most WINDOW readings unacknowledged; Home Assistant acknowledges what it stored (desired
// frame argument "backlog") and only that is freed. Overflow drops the oldest readings,
// counted.
//
// Free of ESPHome types, so a test can compile it alone.

#include <cstddef>
#include <cstdint>
#include <string>

namespace esphome::data_exchange {

/// One reading: 12 bytes (4-byte aligned), no allocation per reading.
struct Reading {
  uint16_t point;      // position in the model
  uint16_t uptime_hi;  // bits 32..47 of the node's uptime in ms (8,900 years)
  uint32_t uptime_lo;  // bits 0..31
  float value;         // numbers as they are; booleans 0 or 1

  uint64_t uptime_ms() const { return (static_cast<uint64_t>(this->uptime_hi) << 32) | this->uptime_lo; }
};

class Backlog {
 public:
  /// Readings per backlog frame: at most 256 x 33 bytes of text (8.5 KB), far below the
  /// API's 65,535-byte message limit.
  static constexpr size_t CHUNK = 256;
  /// Readings sent and not yet acknowledged: the node waits for Home Assistant's
  /// acknowledgement before it sends more (flow control; bounds the API's send buffer).
  static constexpr size_t WINDOW = 2 * CHUNK;

  ~Backlog() { delete[] this->ring_; }
  /// Once, at setup: room for `bytes` / sizeof(Reading) readings (at least one).
  void allocate(size_t bytes);
  size_t capacity() const { return this->capacity_; }

  /// A publish while no client takes live frames. The oldest reading goes if it is full.
  void append(uint16_t point, uint64_t uptime_ms, float value);
  /// Home Assistant stored every reading up to `seq`: they are freed. Sequences outside
  /// what is held are ignored (an acknowledgement of a previous boot, or of nothing).
  void acknowledge(uint64_t seq);
  /// A new connection: readings sent but not acknowledged go out again.
  void rewind() { this->sent_seq_ = this->first_seq_ - 1; }
  /// Whether a backlog frame may go out now (readings unsent, window not full).
  bool ready() const;
  /// Encodes the next chunk (up to CHUNK unsent readings) into the keys of a backlog frame:
  /// `first_seq` (y), `first_uptime` (j) and `text` (h: "point:dt:value" per reading, dt
  /// in ms since the previous reading of the frame). Marks them sent. False: none.
  bool next_chunk(uint64_t &first_seq, uint64_t &first_uptime, std::string &text);

  /// Readings dropped by overflow since boot (frame key l).
  uint64_t dropped() const { return this->dropped_; }
  /// Readings held, not acknowledged (frame key n).
  size_t waiting() const { return this->count_; }
  /// Sequence number the next reading gets (from 1 after boot).
  uint64_t next_seq() const { return this->first_seq_ + this->count_; }

 protected:
  const Reading &at_(size_t offset) const { return this->ring_[(this->head_ + offset) % this->capacity_]; }

  Reading *ring_{nullptr};
  size_t capacity_{0};
  size_t head_{0};   // slot of the oldest reading held
  size_t count_{0};  // readings held
  uint64_t first_seq_{1};  // sequence number of the oldest reading held
  uint64_t sent_seq_{0};   // last reading sent on this connection
  uint64_t dropped_{0};
};

}  // namespace esphome::data_exchange
