// Store-and-forward on the node: the DataExchange side of backlog.h (docs/protocol.md,
// "Backlog"). Readings are kept while no Data Exchange client takes live frames, from the
// moment its connection ends (or a new one asks for the model) until its first accepted
// desired frame; then they are replayed, one chunk per main-loop pass at most, never
// blocking loop(), and freed as Home Assistant acknowledges them.

#include <cinttypes>
#include <cmath>

#include "data_exchange.h"
#include "esphome/core/hal.h"
#include "esphome/core/log.h"

namespace esphome::data_exchange {

static const char *const TAG = "data_exchange.backlog";
static const char *const BACKLOG_KEYS[] = {"v", "m", "u", "y", "j", "h"};

void DataExchange::setup_backlog_() {
  if (this->backlog_bytes_ == 0)
    return;
  this->backlog_.allocate(this->backlog_bytes_);
  ESP_LOGCONFIG(TAG, "Backlog: %u readings in %u bytes", static_cast<unsigned>(this->backlog_.capacity()),
                static_cast<unsigned>(this->backlog_.capacity() * sizeof(Reading)));
}

void DataExchange::record_backlog_(size_t index) {
  if (this->backlog_bytes_ == 0)
    return;
  const Point &p = this->points_[index];
  float value = NAN;
  switch (p.type) {
#ifdef USE_SENSOR
    case PointType::SENSOR:
      value = static_cast<sensor::Sensor *>(p.entity)->state;
      break;
#endif
#ifdef USE_NUMBER
    case PointType::NUMBER:
      value = static_cast<number::Number *>(p.entity)->state;
      break;
#endif
#ifdef USE_BINARY_SENSOR
    case PointType::BINARY_SENSOR:
      value = static_cast<binary_sensor::BinarySensor *>(p.entity)->state ? 1.0f : 0.0f;
      break;
#endif
#ifdef USE_SWITCH
    case PointType::SWITCH:
      value = static_cast<switch_::Switch *>(p.entity)->state ? 1.0f : 0.0f;
      break;
#endif
    default:
      return;  // strings are not kept (configuration check)
  }
  if (!std::isfinite(value))
    return;  // unknown: nothing to record
  this->backlog_.append(static_cast<uint16_t>(index), millis_64(), value);
}

void DataExchange::backlog_connected_() {
  // A connection asks for the model first: from here until its first desired frame the
  // readings are kept, and those sent before and never acknowledged go out again.
  this->backlog_live_ = false;
  this->backlog_.rewind();
}

void DataExchange::backlog_acknowledged_(uint64_t seq) {
  if (this->backlog_bytes_ == 0)
    return;
  if (!this->backlog_live_) {
    this->backlog_live_ = true;
    if (this->backlog_.waiting() != 0) {
      ESP_LOGI(TAG, "Client back: replaying %u readings (%" PRIu64 " dropped since boot)",
               static_cast<unsigned>(this->backlog_.waiting()), this->backlog_.dropped());
    }
  }
  this->backlog_.acknowledge(seq);
}

void DataExchange::loop_backlog_() {
  if (!this->backlog_live_)
    return;
  if (!this->has_client_()) {
    this->backlog_live_ = false;  // gone: keep readings from now on
    this->backlog_.rewind();
    return;
  }
  this->send_backlog_();
}

void DataExchange::send_backlog_() {
  // One chunk per main-loop pass, and only while fewer than WINDOW readings wait for their
  // acknowledgement: live frames never queue behind more than one chunk.
  uint64_t first_seq = 0;
  uint64_t first_uptime = 0;
  if (!this->backlog_.next_chunk(first_seq, first_uptime, this->backlog_buf_))
    return;
  std::string vals[6];
  vals[0] = std::to_string(PROTOCOL_VERSION);
  vals[1] = this->model_hex_;
  vals[2] = std::to_string(millis_64());
  vals[3] = std::to_string(first_seq);
  vals[4] = std::to_string(first_uptime);
  vals[5].swap(this->backlog_buf_);
  this->send_event_(FRAME_EVENT, BACKLOG_KEYS, vals, 6);
  this->backlog_buf_.swap(vals[5]);  // keep the grown buffer
}

}  // namespace esphome::data_exchange
