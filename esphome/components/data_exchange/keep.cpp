// Desired values kept on the node: the record, when it is written, and the boot that starts
// with it (keep.h; docs/protocol.md, "Kept desired values"; docs/exchange.md,
// "Reconciliation").
#include "data_exchange.h"

#ifdef USE_DATA_EXCHANGE_KEEP

#include <algorithm>
#include <cinttypes>
#include <cstring>

#include "codec.h"
#include "esphome/core/helpers.h"
#include "esphome/core/log.h"

namespace esphome::data_exchange {

static const char *const TAG = "data_exchange.keep";
static constexpr uint8_t KEEP_MAGIC[4] = {'D', 'X', 'K', '1'};
static constexpr size_t KEEP_SEQ_AT = 8;  // where the seq sits: not compared (see keep_note_)

size_t DataExchange::keep_point_bytes_(const Point &p) const {
  switch (p.type) {
    case PointType::NUMBER:
      return KEEP_NUMBER_BYTES;
    case PointType::SWITCH:
      return KEEP_SWITCH_BYTES;
#ifdef USE_SELECT
    case PointType::SELECT: {
      size_t longest = 0;
      for (const char *option : static_cast<select::Select *>(p.entity)->traits.get_options())
        longest = std::max(longest, strlen(option));
      return 1 + longest;
    }
#endif
#ifdef USE_TEXT
    case PointType::TEXT: {
      int max_length = static_cast<text::Text *>(p.entity)->traits.get_max_length();
      return 1 + static_cast<size_t>(max_length < 0 ? 0 : max_length);
    }
#endif
    default:
      return 0;
  }
}

bool DataExchange::keep_build_(std::vector<uint8_t> &out) {
  // The node's state as a record: the writable points' values as last applied or reported
  // (Point::expected, current after detect_local_changes_), strings unescaped.
  out.assign(this->keep_.size, 0);
  memcpy(out.data(), KEEP_MAGIC, 4);
  memcpy(out.data() + 4, &this->model_id_, 4);
  memcpy(out.data() + KEEP_SEQ_AT, &this->keep_.seq, 8);
  out[16] = this->acquisition_running_ ? 1 : 0;
  size_t at = KEEP_HEADER;
  for (auto &p : this->points_) {
    if (!p.writable())
      continue;
    size_t room = this->keep_point_bytes_(p);
    if (!p.expected_valid || p.expected.empty()) {
      out[at] = KEEP_UNKNOWN;
      at += room;
      continue;
    }
    const std::string *bytes = &p.expected;
    if (p.type == PointType::SELECT || p.type == PointType::TEXT) {
      if (!decode_string(p.expected, this->scratch_))
        return false;
      bytes = &this->scratch_;
    }
    if (bytes->size() + 1 > room)
      return false;  // cannot happen for values the points hold; never overrun the record
    out[at] = static_cast<uint8_t>(bytes->size());
    memcpy(out.data() + at + 1, bytes->data(), bytes->size());
    at += room;
  }
  return true;
}

void DataExchange::keep_setup_() {
  if (this->keep_.interval_ms == 0)
    return;
  size_t size = KEEP_HEADER;
  for (auto &p : this->points_) {
    if (p.writable())
      size += this->keep_point_bytes_(p);
  }
  if (size > KEEP_RECORD_MAX) {
    // The configuration check (__init__.py) refuses this already for template entities.
    ESP_LOGE(TAG, "keep_desired: the record would take %u bytes (at most %u); nothing is kept",
             static_cast<unsigned>(size), static_cast<unsigned>(KEEP_RECORD_MAX));
    this->keep_.interval_ms = 0;
    return;
  }
  this->keep_.size = size;
  // Keyed by the point layout: a firmware with other points (or other string sizes) never
  // reads this record, and this one never reads theirs.
  uint32_t key = fnv1_hash_extend(fnv1_hash("data_exchange.keep"), this->model_id_);
  key = fnv1_hash_extend(key, static_cast<uint32_t>(size));
  this->keep_.pref = global_preferences->make_preference(size, key, true);
  this->keep_.saved.assign(size, 0);
  this->keep_.image.reserve(size);
  if (!this->keep_.pref.load(this->keep_.saved.data(), size) || memcmp(this->keep_.saved.data(), KEEP_MAGIC, 4) != 0 ||
      memcmp(this->keep_.saved.data() + 4, &this->model_id_, 4) != 0) {
    ESP_LOGI(TAG, "No kept desired values for this layout: the points start as configured");
    this->keep_.saved.clear();  // nothing saved yet: the first state is written
    return;
  }
  this->keep_load_();
}

void DataExchange::keep_load_() {
  // Decode every field first and check it with the one rule (the traits may have changed
  // under the same layout): the record is applied whole or not at all.
  const std::vector<uint8_t> &rec = this->keep_.saved;
  uint64_t seq;
  memcpy(&seq, rec.data() + KEEP_SEQ_AT, 8);
  this->fields_.clear();
  size_t at = KEEP_HEADER;
  for (auto &p : this->points_) {
    if (!p.writable())
      continue;
    size_t room = this->keep_point_bytes_(p);
    uint8_t len = rec[at];
    std::string field;
    if (len != KEEP_UNKNOWN) {
      if (len + 1U > room) {
        ESP_LOGW(TAG, "Kept record is damaged: the points start as configured");
        this->keep_.saved.clear();
        return;
      }
      const char *bytes = reinterpret_cast<const char *>(rec.data() + at + 1);
      if (p.type == PointType::SELECT || p.type == PointType::TEXT) {
        append_string(field, bytes, len);
      } else {
        field.assign(bytes, len);
      }
      if (this->validate_(p, field) != Refusal::NONE) {
        ESP_LOGW(TAG, "Kept value of '%s' is not valid any more: the points start as configured",
                 p.entity->get_name().c_str());
        this->keep_.saved.clear();
        return;
      }
    }
    this->fields_.push_back(std::move(field));
    at += room;
  }
  // Applied like a desired frame, but before the first frame: what the points hold now is
  // what this node applied, not a local change.
  size_t w = 0;
  for (auto &p : this->points_) {
    if (!p.writable())
      continue;
    std::string &field = this->fields_[w++];
    if (field.empty())
      continue;
    this->canonicalize_(p, field);
    this->apply_(p, field);
  }
  if (rec[16] == 0)
    this->set_acquisition_(false);
  this->keep_.seq = this->keep_.started_with = seq;
  ESP_LOGI(TAG, "Started with the kept desired values of desired frame %" PRIu64 "%s", seq,
           rec[16] == 0 ? " (acquisition paused)" : "");
}

void DataExchange::keep_note_() {
  // Called after the points were compared with what the node last applied or reported
  // (every cycle, with or without a client, and after a desired frame changed something).
  // Written when the values or acquisition differ from the record (the desired frame's
  // number alone does not count: the values still derive from the older one), at once the
  // first time, then at most once per interval; a change within it is written when it ends.
  if (this->keep_.size == 0 || this->failsafe_active_)
    return;  // fail-safe values are not what Home Assistant wanted: the record keeps those
  if (this->applied_seq_ != 0)
    this->keep_.seq = this->applied_seq_;
  if (this->keep_.seq == 0)
    return;  // no desired frame yet: nothing of Home Assistant's to keep
  if (!this->keep_build_(this->keep_.image))
    return;
  const auto &now = this->keep_.image;
  const auto &saved = this->keep_.saved;
  bool same = saved.size() == now.size() && memcmp(saved.data(), now.data(), KEEP_SEQ_AT) == 0 &&
              memcmp(saved.data() + KEEP_SEQ_AT + 8, now.data() + KEEP_SEQ_AT + 8, now.size() - KEEP_SEQ_AT - 8) == 0;
  if (same) {
    this->keep_.pending = false;
    return;
  }
  if (this->keep_.cooling) {
    this->keep_.pending = true;
    return;
  }
  this->keep_write_();
}

void DataExchange::keep_write_() {
  this->keep_.pref.save(this->keep_.image.data(), this->keep_.image.size());
  this->keep_.saved = this->keep_.image;
  this->keep_.pending = false;
  this->keep_.writes++;
  ESP_LOGD(TAG, "Kept desired frame %" PRIu64 " (%" PRIu32 " records since boot)", this->keep_.seq,
           this->keep_.writes);
  this->keep_.cooling = true;
  this->set_timeout("keep", this->keep_.interval_ms, [this]() {
    this->keep_.cooling = false;
    if (this->keep_.pending)
      this->keep_note_();
  });
}

void DataExchange::on_shutdown() {
  // What the points hold now (also a change since the last cycle, or one waiting for the
  // interval) is written and committed: a clean shutdown loses nothing (ESPHome's own
  // syncer may run before this component).
  if (this->keep_.size == 0)
    return;
  this->detect_local_changes_();
  this->keep_.cooling = false;
  uint32_t writes = this->keep_.writes;
  this->keep_note_();
  if (this->keep_.writes != writes)
    global_preferences->sync();
}

}  // namespace esphome::data_exchange

#endif  // USE_DATA_EXCHANGE_KEEP
