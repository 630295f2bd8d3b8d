#pragma once

// Desired values kept on the node (component option keep_desired; docs/protocol.md, "Kept
// desired values"). The node keeps one record in ESPHome's preferences: the values its
// writable points hold, its acquisition state and the desired frame they derive from. At
// boot, a record of the same point layout puts the points back before the first frame, and
// the describe answer says which desired frame that was (model key "g"), so Home Assistant
// knows those values are its own earlier writes.

#include <cstddef>
#include <cstdint>
#include <vector>

#include "esphome/core/preferences.h"

namespace esphome::data_exchange {

/// The largest record: ESPHome's host preferences hold at most 255 bytes per entry; it also
/// bounds the RAM (two copies) and the bytes written to flash per change.
static constexpr size_t KEEP_RECORD_MAX = 255;
/// Header: magic (4), model id (4), desired frame seq (8), acquisition (1), reserved (1).
static constexpr size_t KEEP_HEADER = 18;
/// Per point: a length byte, then the value (a number's or switch's text, a string's bytes).
static constexpr uint8_t KEEP_UNKNOWN = 0xFF;  // length byte of a point without a value
static constexpr size_t KEEP_NUMBER_BYTES = 1 + 15;  // "-1.17549435e-38": the longest number
static constexpr size_t KEEP_SWITCH_BYTES = 1 + 1;

struct KeepState {
  uint32_t interval_ms{0};  // 0: the feature is off (not configured, or refused at setup)
  size_t size{0};           // bytes of this layout's record
  ESPPreferenceObject pref;
  std::vector<uint8_t> saved;  // the record last written or loaded
  std::vector<uint8_t> image;  // the node's state now, to compare with it
  bool cooling{false};         // a record was written less than interval_ms ago
  bool pending{false};         // a change waits for the end of the interval
  uint64_t seq{0};             // the desired frame the points' values derive from
  uint64_t started_with{0};    // model key "g": the kept frame this boot started with
  uint32_t writes{0};          // records written since boot
};

}  // namespace esphome::data_exchange
