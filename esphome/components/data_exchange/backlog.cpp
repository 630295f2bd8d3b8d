#include "backlog.h"

#include <cinttypes>
#include <cstdio>

#include "codec.h"

namespace esphome::data_exchange {

void Backlog::allocate(size_t bytes) {
  if (this->ring_ != nullptr)
    return;
  size_t n = bytes / sizeof(Reading);
  this->capacity_ = n == 0 ? 1 : n;
  this->ring_ = new Reading[this->capacity_];  // the one allocation, at setup
}

void Backlog::append(uint16_t point, uint64_t uptime_ms, float value) {
  if (this->capacity_ == 0)
    return;
  if (this->count_ == this->capacity_) {
    // Full: the oldest reading goes. Counted; if it was sent already, the rest still follow.
    this->head_ = (this->head_ + 1) % this->capacity_;
    this->count_--;
    this->first_seq_++;
    this->dropped_++;
    if (this->sent_seq_ < this->first_seq_ - 1)
      this->sent_seq_ = this->first_seq_ - 1;
  }
  Reading &r = this->ring_[(this->head_ + this->count_) % this->capacity_];
  r.point = point;
  r.uptime_hi = static_cast<uint16_t>(uptime_ms >> 32);
  r.uptime_lo = static_cast<uint32_t>(uptime_ms);
  r.value = value;
  this->count_++;
}

void Backlog::acknowledge(uint64_t seq) {
  if (seq < this->first_seq_ || seq >= this->next_seq())
    return;  // nothing held up to there
  size_t freed = static_cast<size_t>(seq - this->first_seq_ + 1);
  this->head_ = (this->head_ + freed) % this->capacity_;
  this->count_ -= freed;
  this->first_seq_ = seq + 1;
  if (this->sent_seq_ < seq)
    this->sent_seq_ = seq;
}

bool Backlog::ready() const {
  uint64_t last = this->next_seq() - 1;
  if (this->sent_seq_ >= last)
    return false;  // everything held is sent
  return this->sent_seq_ + 1 - this->first_seq_ < WINDOW;
}

bool Backlog::next_chunk(uint64_t &first_seq, uint64_t &first_uptime, std::string &text) {
  text.clear();
  if (!this->ready())
    return false;
  size_t offset = static_cast<size_t>(this->sent_seq_ + 1 - this->first_seq_);
  size_t end = offset + CHUNK;
  if (end > this->count_)
    end = this->count_;
  first_seq = this->first_seq_ + offset;
  first_uptime = this->at_(offset).uptime_ms();
  uint64_t previous = first_uptime;
  char buf[32];
  for (size_t i = offset; i < end; i++) {
    const Reading &r = this->at_(i);
    uint64_t t = r.uptime_ms();
    // Readings are appended in time order (the node's monotonic clock).
    uint64_t dt = t >= previous ? t - previous : 0;
    previous = t;
    if (i != offset)
      text += ',';
    snprintf(buf, sizeof(buf), "%u:%" PRIu64 ":", static_cast<unsigned>(r.point), dt);
    text += buf;
    append_float(text, r.value);
  }
  this->sent_seq_ = this->first_seq_ + end - 1;
  return true;
}

}  // namespace esphome::data_exchange
