#include "clock.h"

#include <cinttypes>
#include <cstdio>
#include <sys/time.h>

#include "esphome/core/hal.h"

namespace esphome::data_exchange {

void MeasurementClock::add_point() { this->published_ms_.push_back(millis_64()); }

void MeasurementClock::stamp(size_t index) {
  if (index < this->published_ms_.size())
    this->published_ms_[index] = millis_64();
}

uint64_t MeasurementClock::begin_frame() {
  this->frame_ms_ = millis_64();
  return this->frame_ms_;
}

void MeasurementClock::append_age(size_t index, bool empty, bool first, std::string &ages) const {
  if (!first)
    ages += ',';
  if (empty || index >= this->published_ms_.size())
    return;
  uint64_t at = this->published_ms_[index];
  uint64_t age = at > this->frame_ms_ ? 0 : this->frame_ms_ - at;
  char buf[21];
  snprintf(buf, sizeof(buf), "%" PRIu64, age);
  ages += buf;
}

bool MeasurementClock::has_time() const {
#ifdef USE_TIME
  return this->time_ != nullptr;
#else
  return false;
#endif
}

bool MeasurementClock::unix_ms(std::string &out) const {
#ifdef USE_TIME
  if (this->time_ == nullptr || !this->time_->utcnow().is_valid())
    return false;
  // Every time platform keeps the system clock (homeassistant and sntp set it, host reads
  // it), which gettimeofday() reads with ms resolution on ESP32, ESP8266 and the host.
  struct timeval tv;
  if (gettimeofday(&tv, nullptr) != 0)
    return false;
  uint64_t ms = static_cast<uint64_t>(tv.tv_sec) * 1000U + static_cast<uint64_t>(tv.tv_usec) / 1000U;
  char buf[21];
  snprintf(buf, sizeof(buf), "%" PRIu64, ms);
  out = buf;
  return true;
#else
  (void) out;
  return false;
#endif
}

}  // namespace esphome::data_exchange
