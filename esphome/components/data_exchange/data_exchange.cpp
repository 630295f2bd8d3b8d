#include "data_exchange.h"

#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "codec.h"
#include "esphome/core/application.h"
#include "esphome/core/hal.h"
#include "esphome/core/log.h"

namespace esphome::data_exchange {

static const char *const TAG = "data_exchange";

// ---- configuration ----

void DataExchange::add_point_(PointType type, EntityBase *entity) {
  Point p;
  p.type = type;
  p.entity = entity;
  this->points_.push_back(std::move(p));
}

#ifdef USE_NUMBER
void DataExchange::add_number(number::Number *n, bool has_safe, float safe) {
  this->add_point_(PointType::NUMBER, n);
  this->points_.back().has_safe_value = has_safe;
  this->points_.back().safe_number = safe;
}
#endif

#ifdef USE_SWITCH
void DataExchange::add_switch(switch_::Switch *s, bool has_safe, bool safe) {
  this->add_point_(PointType::SWITCH, s);
  this->points_.back().has_safe_value = has_safe;
  this->points_.back().safe_bool = safe;
}
#endif

#ifdef USE_SELECT
void DataExchange::add_select(select::Select *s, bool has_safe, const char *safe) {
  this->add_point_(PointType::SELECT, s);
  this->points_.back().has_safe_value = has_safe;
  this->points_.back().safe_string = safe;
}
#endif

#ifdef USE_TEXT
void DataExchange::add_text(text::Text *t, bool has_safe, const char *safe) {
  this->add_point_(PointType::TEXT, t);
  this->points_.back().has_safe_value = has_safe;
  this->points_.back().safe_string = safe;
}
#endif

void DataExchange::compute_model_() {
  // The model description: per point its type code and entity key (the key the native API
  // uses for the entity), in frame order. The model id is its 32-bit FNV-1a hash.
  this->model_points_.clear();
  this->writable_count_ = 0;
  char buf[12];
  for (auto &p : this->points_) {
    if (!this->model_points_.empty())
      this->model_points_ += ',';
    snprintf(buf, sizeof(buf), "%c%08" PRIx32, static_cast<char>(p.type), p.entity->get_object_id_hash());
    this->model_points_ += buf;
    if (p.writable())
      this->writable_count_++;
  }
  uint32_t hash = 2166136261UL;
  hash = (hash ^ PROTOCOL_VERSION) * 16777619UL;
  for (char c : this->model_points_)
    hash = (hash ^ static_cast<uint8_t>(c)) * 16777619UL;
  this->model_id_ = hash;
  snprintf(this->model_hex_, sizeof(this->model_hex_), "%08" PRIx32, hash);
}

void DataExchange::setup() {
  this->compute_model_();
  char boot[17];
  snprintf(boot, sizeof(boot), "%08" PRIx32 "%08" PRIx32, random_uint32(), random_uint32());
  this->boot_id_ = boot;
  snprintf(boot, sizeof(boot), "%08" PRIx32 "%08" PRIx32, random_uint32(), random_uint32());
  this->token_ = boot;
  this->register_service(&DataExchange::on_write, WRITE_ACTION,
                         {"token", "seq", "seen", "model", "values", "acquisition", "backlog"});
  this->register_service(&DataExchange::on_describe, DESCRIBE_ACTION);
#ifdef USE_DATA_EXCHANGE_KEEP
  this->keep_setup_();  // kept desired values go in before any point is watched or sent
#endif
  for (size_t i = 0; i < this->points_.size(); i++) {
    this->watch_point_(i);
    this->clock_.add_point();
  }
  this->restart_cycle_();
  this->arm_failsafe_();
  this->setup_backlog_();
}

void DataExchange::dump_config() {
  ESP_LOGCONFIG(TAG,
                "Data Exchange:\n"
                "  Protocol: %u\n"
                "  Model: %s (%u points, %u writable)\n"
                "  Cycle: %" PRIu32 " ms\n"
                "  Change delay: %" PRIu32 " ms\n"
                "  Fail-safe timeout: %" PRIu32 " ms%s",
                PROTOCOL_VERSION, this->model_hex_, static_cast<unsigned>(this->points_.size()),
                static_cast<unsigned>(this->writable_count_), this->cycle_ms_, this->change_delay_ms_,
                this->failsafe_ms_, this->failsafe_ms_ == 0 ? " (off)" : "");
#ifdef USE_DATA_EXCHANGE_KEEP
  ESP_LOGCONFIG(TAG, "  Keep desired: every %" PRIu32 " ms at most, record %u bytes, started with frame %" PRIu64,
                this->keep_.interval_ms, static_cast<unsigned>(this->keep_.size), this->keep_.started_with);
#endif
}

// ---- node -> Home Assistant ----

void DataExchange::encode_point_(const Point &p, std::string &out) {
  switch (p.type) {
#ifdef USE_SENSOR
    case PointType::SENSOR: {
      auto *s = static_cast<sensor::Sensor *>(p.entity);
      if (s->has_state())
        append_float(out, s->state);
      break;
    }
#endif
#ifdef USE_NUMBER
    case PointType::NUMBER: {
      auto *n = static_cast<number::Number *>(p.entity);
      if (n->has_state())
        append_float(out, n->state);
      break;
    }
#endif
#ifdef USE_BINARY_SENSOR
    case PointType::BINARY_SENSOR: {
      auto *b = static_cast<binary_sensor::BinarySensor *>(p.entity);
      if (b->has_state())
        out += b->state ? '1' : '0';
      break;
    }
#endif
#ifdef USE_SWITCH
    case PointType::SWITCH: {
      // A switch always has a state (restored or its initial one).
      out += static_cast<switch_::Switch *>(p.entity)->state ? '1' : '0';
      break;
    }
#endif
#ifdef USE_TEXT_SENSOR
    case PointType::TEXT_SENSOR: {
      auto *t = static_cast<text_sensor::TextSensor *>(p.entity);
      if (t->has_state())
        append_string(out, t->state.data(), t->state.size());
      break;
    }
#endif
#ifdef USE_TEXT
    case PointType::TEXT: {
      auto *t = static_cast<text::Text *>(p.entity);
      if (t->has_state())
        append_string(out, t->state.data(), t->state.size());
      break;
    }
#endif
#ifdef USE_SELECT
    case PointType::SELECT: {
      auto *s = static_cast<select::Select *>(p.entity);
      if (s->has_state()) {
        StringRef option = s->current_option();
        append_string(out, option.c_str(), option.size());
      }
      break;
    }
#endif
    default:
      break;
  }
}

bool DataExchange::has_client_() const {
  for (const auto &client : api::global_api_server->active_clients()) {
    if (strncmp(client->get_name(), CLIENT_PREFIX, strlen(CLIENT_PREFIX)) == 0)
      return true;
  }
  return false;
}

void DataExchange::send_event_(const char *name, const char *const *keys, const std::string *values,
                               size_t count) {
  api::HomeassistantActionRequest msg;
  msg.service = StringRef(name);
  msg.is_event = true;
  msg.data.init(count);
  for (size_t i = 0; i < count; i++) {
    auto &kv = msg.data.emplace_back();
    kv.key = StringRef(keys[i]);
    kv.value = StringRef(values[i].data(), values[i].size());
  }
  // Only our integration's connections get frames: Home Assistant's own esphome
  // integration (or any other client) never sees them, so nothing lands on its event bus.
  for (const auto &client : api::global_api_server->active_clients()) {
    if (strncmp(client->get_name(), CLIENT_PREFIX, strlen(CLIENT_PREFIX)) == 0)
      client->send_homeassistant_action(msg);
  }
}

void DataExchange::detect_local_changes_() {
  // A writable point whose value differs from what this node last applied or reported was
  // changed locally (touch pad, local automation, another API client). It is stamped with
  // the sequence number of the next frame, the one that will report it.
  uint64_t next_seq = this->seq_ + 1;
  for (auto &p : this->points_) {
    if (!p.writable())
      continue;
    this->scratch_.clear();
    this->encode_point_(p, this->scratch_);
    if (!p.expected_valid) {
      p.expected = this->scratch_;
      p.expected_valid = true;
    } else if (p.expected != this->scratch_) {
      p.expected = this->scratch_;
      p.local_change_seq = next_seq;
      p.at_safe_value = false;
      ESP_LOGD(TAG, "Local change of '%s'", p.entity->get_name().c_str());
    }
  }
}

void DataExchange::send_frame_() {
  // Local changes are detected every cycle, with or without a client, so a change made
  // while Home Assistant is away is still known as local when it returns.
  this->detect_local_changes_();
#ifdef USE_DATA_EXCHANGE_KEEP
  this->keep_note_();  // the points' values may have changed: the record follows
#endif
  if (!this->has_client_())
    return;  // nothing to send, nothing to encode; the sequence number counts frames sent
  uint64_t seq = this->seq_ + 1;
  this->values_buf_.clear();
  this->ages_buf_.clear();
  this->clock_.begin_frame();
  bool first = true;
  for (size_t i = 0; i < this->points_.size(); i++) {
    Point &p = this->points_[i];
    if (!first)
      this->values_buf_ += ',';
    size_t start = this->values_buf_.size();
    // Writable points were just encoded by detect_local_changes_(): reuse that.
    if (p.writable()) {
      this->values_buf_ += p.expected;
    } else {
      this->encode_point_(p, this->values_buf_);
    }
    this->clock_.append_age(i, this->values_buf_.size() == start, first, this->ages_buf_);
    first = false;
  }
  this->seq_ = seq;
  this->last_frame_ms_ = millis();
  // The full state carries every change made since the last frame.
  for (auto &p : this->points_)
    p.changed = false;
  this->any_changed_ = false;
  this->send_node_frame_(nullptr);
}

void DataExchange::watch_point_(size_t index) {
  // Every entity type calls its callbacks with its own argument types; the index is all
  // this needs. A publish of the same value marks the point too: cheap, and it is dropped
  // below for writable points (compared with what was last reported or applied).
  auto mark = [this, index](auto &&...) { this->mark_changed_(index); };
  EntityBase *entity = this->points_[index].entity;
  switch (this->points_[index].type) {
#ifdef USE_SENSOR
    case PointType::SENSOR:
      static_cast<sensor::Sensor *>(entity)->add_on_state_callback(mark);
      break;
#endif
#ifdef USE_BINARY_SENSOR
    case PointType::BINARY_SENSOR:
      static_cast<binary_sensor::BinarySensor *>(entity)->add_on_state_callback(mark);
      break;
#endif
#ifdef USE_TEXT_SENSOR
    case PointType::TEXT_SENSOR:
      static_cast<text_sensor::TextSensor *>(entity)->add_on_state_callback(mark);
      break;
#endif
#ifdef USE_NUMBER
    case PointType::NUMBER:
      static_cast<number::Number *>(entity)->add_on_state_callback(mark);
      break;
#endif
#ifdef USE_SWITCH
    case PointType::SWITCH:
      static_cast<switch_::Switch *>(entity)->add_on_state_callback(mark);
      break;
#endif
#ifdef USE_SELECT
    case PointType::SELECT:
      static_cast<select::Select *>(entity)->add_on_state_callback(mark);
      break;
#endif
#ifdef USE_TEXT
    case PointType::TEXT:
      static_cast<text::Text *>(entity)->add_on_state_callback(mark);
      break;
#endif
    default:
      break;
  }
}

void DataExchange::mark_changed_(size_t index) {
  if (this->points_[index].in_backlog && !this->backlog_live_)
    this->record_backlog_(index);
  this->points_[index].changed = true;
  this->clock_.stamp(index);
  if (this->change_delay_ms_ == 0) {
    // At once, but after the rest of this main-loop pass: every point published in the
    // same pass (a sensor component's whole update, an action setting several points)
    // goes out in one change frame. A deferred call runs at the start of the next pass,
    // which follows without sleeping (the scheduler has work due); from loop() it would
    // wait up to one main-loop interval (16 ms).
    if (!this->flush_deferred_) {
      this->flush_deferred_ = true;
      this->defer([this]() {
        this->flush_deferred_ = false;
        this->send_changes_();
      });
    }
    return;
  }
  if (!this->any_changed_) {
    this->any_changed_ = true;
    this->first_change_ms_ = millis();
  }
}

void DataExchange::loop() {
  if (this->backlog_bytes_ != 0)
    this->loop_backlog_();
  if (this->any_changed_ && millis() - this->first_change_ms_ >= this->change_delay_ms_)
    this->send_changes_();
}

void DataExchange::send_changes_() {
  // A change frame: the points published since the last frame, in frame order, with their
  // positions (key "i"). Without a client there is nobody to tell; local changes are still
  // detected every cycle (send_frame_).
  this->any_changed_ = false;
  bool client = this->has_client_();
  uint64_t seq = this->seq_ + 1;
  this->values_buf_.clear();
  this->indices_buf_.clear();
  this->ages_buf_.clear();
  this->clock_.begin_frame();
  size_t count = 0;
  char index_text[12];
  for (size_t i = 0; i < this->points_.size(); i++) {
    Point &p = this->points_[i];
    if (!p.changed)
      continue;
    p.changed = false;
    if (!client)
      continue;
    this->scratch_.clear();
    this->encode_point_(p, this->scratch_);
    if (p.writable()) {
      if (p.expected_valid && p.expected == this->scratch_)
        continue;  // what this node applied or already reported
      if (p.expected_valid) {
        p.local_change_seq = seq;  // first reported in this frame
        p.at_safe_value = false;
        ESP_LOGD(TAG, "Local change of '%s'", p.entity->get_name().c_str());
      }
      p.expected = this->scratch_;
      p.expected_valid = true;
    }
    bool first = count++ == 0;
    if (!first) {
      this->values_buf_ += ',';
      this->indices_buf_ += ',';
    }
    snprintf(index_text, sizeof(index_text), "%u", static_cast<unsigned>(i));
    this->indices_buf_ += index_text;
    this->values_buf_ += this->scratch_;
    this->clock_.append_age(i, this->scratch_.empty(), first, this->ages_buf_);
  }
  if (count == 0)
    return;
  this->seq_ = seq;
  this->send_node_frame_(&this->indices_buf_);
}

void DataExchange::send_node_frame_(const std::string *indices) {
  // A full frame carries the node's state with every point's value. A change frame
  // (protocol 4) carries values only, with their positions ("i"): acknowledgements,
  // refusals, counters, acquisition and fail-safe state wait for the next full frame.
  // Both carry each value's age ("w") and, with a valid time source, the node's Unix
  // time ("d", last: left out otherwise); ages count from the frame's uptime "u". Full
  // frames of a node with a backlog carry its counters ("l", "n") before "d".
  // While the fail-safe is active, full frames say which points hold the safe value it set
  // ("y"), so a local change made meanwhile is told from it.
  // Static key lists (flash, not stack): with and without the backlog's and the fail-safe's
  // keys; "d" is last and left out without a valid time source.
  static const char *const FULL_KEYS[] = {"v", "m", "s", "u", "x", "w", "a", "q",
                                          "f", "r", "e", "o", "l", "n", "y", "d"};
  static const char *const FULL_KEYS_NO_SAFE[] = {"v", "m", "s", "u", "x", "w", "a", "q",
                                                  "f", "r", "e", "o", "l", "n", "d"};
  static const char *const FULL_KEYS_NO_BACKLOG[] = {"v", "m", "s", "u", "x", "w", "a",
                                                     "q", "f", "r", "e", "o", "y", "d"};
  static const char *const FULL_KEYS_NEITHER[] = {"v", "m", "s", "u", "x", "w", "a",
                                                  "q", "f", "r", "e", "o", "d"};
  static const char *const CHANGE_KEYS[] = {"v", "m", "s", "u", "x", "w", "i", "d"};
  std::string vals[16];
  vals[0] = std::to_string(PROTOCOL_VERSION);
  vals[1] = this->model_hex_;
  vals[2] = std::to_string(this->seq_);
  vals[3] = std::to_string(this->clock_.begin_frame_ms());
  vals[4].swap(this->values_buf_);
  vals[5].swap(this->ages_buf_);
  if (indices != nullptr) {
    vals[6] = *indices;
    size_t count = this->clock_.unix_ms(vals[7]) ? 8 : 7;
    this->send_event_(FRAME_EVENT, CHANGE_KEYS, vals, count);
  } else {
    vals[6] = std::to_string(this->applied_seq_);
    vals[7] = this->acquisition_running_ ? "1" : "0";
    vals[8] = this->failsafe_active_ ? "1" : "0";
    vals[9] = std::to_string(this->refused_frames_);
    vals[10] = this->last_refusal_;
    vals[11] = std::to_string(this->foreign_requests_);
    const bool backlog = this->backlog_bytes_ != 0;
    size_t count = 12;
    if (backlog) {  // since 5: readings dropped and waiting
      vals[count++] = std::to_string(this->backlog_.dropped());
      vals[count++] = std::to_string(this->backlog_.waiting());
    }
    if (this->failsafe_active_)
      this->append_safe_points_(vals[count++]);
    const char *const *keys = backlog ? (this->failsafe_active_ ? FULL_KEYS : FULL_KEYS_NO_SAFE)
                                      : (this->failsafe_active_ ? FULL_KEYS_NO_BACKLOG : FULL_KEYS_NEITHER);
    if (this->clock_.unix_ms(vals[count]))
      count++;
    this->send_event_(FRAME_EVENT, keys, vals, count);
  }
  this->values_buf_.swap(vals[4]);  // keep the grown buffers for the next frame
  this->ages_buf_.swap(vals[5]);
}

void DataExchange::on_describe() {
  // With the model, where this node stands: its boot id tells Home Assistant whether it
  // restarted since they last spoke, before Home Assistant sends its first desired frame
  // (uptime alone cannot: a host node's clock does not start at zero).
  this->backlog_connected_();  // a new connection begins with this request
  static const char *const KEYS[] = {"v", "m", "c", "t", "p", "b", "u", "s", "k", "g"};
  std::string vals[10];
  vals[0] = std::to_string(PROTOCOL_VERSION);
  vals[1] = this->model_hex_;
  vals[2] = std::to_string(this->cycle_ms_);
  vals[3] = std::to_string(this->failsafe_ms_);
  vals[4] = this->model_points_;
  vals[5] = this->boot_id_;
  vals[6] = std::to_string(millis_64());
  vals[7] = std::to_string(this->seq_);
  vals[8] = this->token_;  // the model event goes to Data Exchange clients only
#ifdef USE_DATA_EXCHANGE_KEEP
  vals[9] = std::to_string(this->keep_.started_with);  // kept desired frame this boot started with
#else
  vals[9] = "0";
#endif
  this->send_event_(MODEL_EVENT, KEYS, vals, 10);
}

void DataExchange::restart_cycle_() {
  this->set_interval("frame", this->cycle_ms_, [this]() {
    // A frame went out less than 3/4 of a cycle ago (the answer to a desired frame): this
    // one would only repeat it. When Home Assistant drives the exchange, about one frame per
    // cycle; otherwise the longest gap between frames stays under 1.75 cycles.
    if (this->last_frame_ms_ != 0 && millis() - this->last_frame_ms_ < this->cycle_ms_ * 3 / 4)
      return;
    this->send_frame_();
  });
}

// ---- Home Assistant -> node ----

Refusal DataExchange::validate_(const Point &p, const std::string &field) {
  if (field.empty())
    return Refusal::NONE;  // no desired value for this point
  // The value this node holds is always taken back, whatever its traits say (a local
  // automation may set a number off its step): it changes nothing and blocks nothing.
  this->scratch_.clear();
  this->encode_point_(p, this->scratch_);
  if (field == this->scratch_)
    return Refusal::NONE;
  switch (p.type) {
#ifdef USE_NUMBER
    case PointType::NUMBER: {
      auto *n = static_cast<number::Number *>(p.entity);
      float v;
      if (!parse_float(field, v))
        return Refusal::FORMAT;
      return check_number(v, n->traits.get_min_value(), n->traits.get_max_value(), n->traits.get_step());
    }
#endif
#ifdef USE_SWITCH
    case PointType::SWITCH:
      return field == "0" || field == "1" ? Refusal::NONE : Refusal::FORMAT;
#endif
#ifdef USE_SELECT
    case PointType::SELECT: {
      std::string option;
      if (!decode_string(field, option))
        return Refusal::FORMAT;
      auto *s = static_cast<select::Select *>(p.entity);
      return s->index_of(option).has_value() ? Refusal::NONE : Refusal::OPTION;
    }
#endif
#ifdef USE_TEXT
    case PointType::TEXT: {
      std::string value;
      if (!decode_string(field, value))
        return Refusal::FORMAT;
      auto *t = static_cast<text::Text *>(p.entity);
      auto len = static_cast<int>(value.size());
      if (len < t->traits.get_min_length() || len > t->traits.get_max_length())
        return Refusal::LENGTH;
      return Refusal::NONE;
    }
#endif
    default:
      return Refusal::FORMAT;
  }
}

void DataExchange::canonicalize_(const Point &p, std::string &field) {
  // A valid value written another way than this node writes it ("22.0", "'%41") is kept as
  // the node will report it ("22", "'A"): otherwise the next cycle would take the
  // difference for a local change.
  switch (p.type) {
    case PointType::NUMBER: {
      float v;
      if (!parse_float(field, v))
        return;
      this->scratch_.clear();
      append_float(this->scratch_, v);
      break;
    }
    case PointType::SELECT:
    case PointType::TEXT: {
      std::string value;
      if (!decode_string(field, value))
        return;
      this->scratch_.clear();
      append_string(this->scratch_, value.data(), value.size());
      break;
    }
    default:
      return;  // a switch's 0 and 1 are the only texts
  }
  field.swap(this->scratch_);
}

bool DataExchange::apply_(Point &p, const std::string &encoded) {
  // Re-encode the current value: points already at the desired value are left alone, so an
  // unchanged desired frame causes no state update on the node. True if it changed.
  this->scratch_.clear();
  this->encode_point_(p, this->scratch_);
  p.expected = encoded;
  p.expected_valid = true;
  if (this->scratch_ == encoded)
    return false;
  switch (p.type) {
#ifdef USE_NUMBER
    case PointType::NUMBER: {
      float v = strtof(encoded.c_str(), nullptr);
      static_cast<number::Number *>(p.entity)->make_call().set_value(v).perform();
      break;
    }
#endif
#ifdef USE_SWITCH
    case PointType::SWITCH:
      static_cast<switch_::Switch *>(p.entity)->control(encoded == "1");
      break;
#endif
#ifdef USE_SELECT
    case PointType::SELECT: {
      std::string option;
      decode_string(encoded, option);
      static_cast<select::Select *>(p.entity)->make_call().set_option(option).perform();
      break;
    }
#endif
#ifdef USE_TEXT
    case PointType::TEXT: {
      std::string value;
      decode_string(encoded, value);
      static_cast<text::Text *>(p.entity)->make_call().set_value(value).perform();
      break;
    }
#endif
    default:
      break;
  }
  return true;
}

void DataExchange::refuse_(uint64_t seq, Refusal reason, int point) {
  // Nothing of the frame is applied. The frames say which point and why, so Home Assistant
  // drops that desired value and every other point flows again; the warning is logged once
  // for the same point and reason (a refusal may repeat every cycle until then).
  this->refused_frames_++;
  this->last_refusal_ = std::to_string(seq);
  this->last_refusal_ += ':';
  if (point >= 0)
    this->last_refusal_ += std::to_string(point);
  this->last_refusal_ += ':';
  this->last_refusal_ += refusal_code(reason);
  bool repeated = point == this->logged_refusal_point_ && reason == this->logged_refusal_;
  this->logged_refusal_point_ = point;
  this->logged_refusal_ = reason;
  if (repeated) {
    ESP_LOGD(TAG, "Refused desired frame %s: %s (writable point %d); nothing applied", std::to_string(seq).c_str(),
             refusal_code(reason), point);
  } else {
    ESP_LOGW(TAG, "Refused desired frame %s: %s (writable point %d); nothing applied", std::to_string(seq).c_str(),
             refusal_code(reason), point);
  }
  // A refused frame is still a frame from Home Assistant: the fail-safe is for silence.
  this->arm_failsafe_();
}

void DataExchange::on_write(std::string token, std::string seq_text, std::string seen_text, std::string model,
                            std::string values, int32_t acquisition, std::string backlog) {
  // Not from Data Exchange (its token is sent to Data Exchange clients only): another API
  // client called the action. Counted (frame key "o"), ignored: no refusal, no fail-safe.
  if (token != this->token_) {
    if (this->foreign_requests_++ == 0) {
      ESP_LOGW(TAG, "Ignored a desired frame from a client that is not Data Exchange (further ones are counted)");
    } else {
      ESP_LOGD(TAG, "Ignored a desired frame from a client that is not Data Exchange");
    }
    return;
  }
  // Validate the whole frame first; apply nothing unless every part is valid.
  uint64_t seq = 0;
  uint64_t seen_seq = 0;
  uint64_t backlog_seq = 0;
  if (!parse_u64(seq_text, seq) || !parse_u64(seen_text, seen_seq) || !parse_u64(backlog, backlog_seq)) {
    this->refuse_(seq, Refusal::FORMAT, -1);
    return;
  }
  if (model != this->model_hex_) {
    this->refuse_(seq, Refusal::MODEL, -1);
    return;
  }
  if (acquisition < -1 || acquisition > 1) {
    this->refuse_(seq, Refusal::ACQUISITION, -1);
    return;
  }
  split_fields(values, this->writable_count_, this->fields_);
  if (this->fields_.size() != this->writable_count_) {
    this->refuse_(seq, Refusal::COUNT, -1);
    return;
  }
  int w = 0;
  for (auto &p : this->points_) {
    if (!p.writable())
      continue;
    Refusal r = this->validate_(p, this->fields_[w]);
    if (r != Refusal::NONE) {
      this->refuse_(seq, r, w);
      return;
    }
    w++;
  }
  this->logged_refusal_point_ = -2;  // accepted: the next refusal is news again

  // Apply. A point changed locally in a frame Home Assistant had not seen yet when it sent
  // this one keeps its local value: Home Assistant decides on it by writer priority once it
  // has seen the change, and says so in a later desired frame. A change made since the last
  // frame has not been reported at all yet: it is found here, before anything is applied.
  this->detect_local_changes_();
  bool changed = false;
  size_t field_index = 0;
  for (auto &p : this->points_) {
    if (!p.writable())
      continue;
    std::string &field = this->fields_[field_index++];
    if (field.empty() || seen_seq < p.local_change_seq)
      continue;
    this->canonicalize_(p, field);
    changed |= this->apply_(p, field);
  }
  if (acquisition >= 0 && seen_seq >= this->acquisition_local_seq_ &&
      (acquisition == 1) != this->acquisition_running_) {
    this->set_acquisition_(acquisition == 1);
    changed = true;
  }
  this->applied_seq_ = seq;
  if (this->failsafe_active_) {
    this->failsafe_active_ = false;
    changed = true;
    ESP_LOGI(TAG, "Desired frames again: fail-safe ended");
  }
  this->arm_failsafe_();
  this->backlog_acknowledged_(backlog_seq);
  // A frame that changed something is acknowledged at once with a full frame; one that
  // changed nothing (Home Assistant's cyclic full state) by the next cycle frame, which
  // carries its sequence number: one frame per cycle while nothing changes.
  if (changed)
    this->send_frame_();
}

// ---- acquisition and fail-safe ----

void DataExchange::set_acquisition(bool running) {
  if (running == this->acquisition_running_)
    return;
  // A local decision: Home Assistant's desired acquisition state from frames sent before it
  // saw this change does not undo it.
  this->acquisition_local_seq_ = this->seq_ + 1;
  this->set_acquisition_(running);
}

void DataExchange::set_acquisition_(bool running) {
  if (running == this->acquisition_running_)
    return;
  this->acquisition_running_ = running;
  for (auto *c : this->acquisition_) {
    if (running) {
      c->start_poller();
    } else {
      c->stop_poller();
    }
  }
  ESP_LOGI(TAG, "Acquisition %s", running ? "resumed" : "paused");
}

void DataExchange::arm_failsafe_() {
  if (this->failsafe_ms_ == 0)
    return;
  this->set_timeout("failsafe", this->failsafe_ms_, [this]() { this->enter_failsafe_(); });
}

void DataExchange::append_safe_points_(std::string &out) const {
  char index_text[12];
  for (size_t i = 0; i < this->points_.size(); i++) {
    if (!this->points_[i].at_safe_value)
      continue;
    if (!out.empty())
      out += ',';
    snprintf(index_text, sizeof(index_text), "%u", static_cast<unsigned>(i));
    out += index_text;
  }
}

void DataExchange::enter_failsafe_() {
  ESP_LOGW(TAG, "No desired frame for %" PRIu32 " ms: fail-safe, writable points go to their safe values",
           this->failsafe_ms_);
  this->failsafe_active_ = true;
  for (auto &p : this->points_) {
    p.at_safe_value = p.writable() && p.has_safe_value;
    if (!p.at_safe_value)
      continue;
    this->scratch_.clear();
    switch (p.type) {
#ifdef USE_NUMBER
      case PointType::NUMBER:
        append_float(this->scratch_, p.safe_number);
        break;
#endif
#ifdef USE_SWITCH
      case PointType::SWITCH:
        this->scratch_ = p.safe_bool ? "1" : "0";
        break;
#endif
      default:
        append_string(this->scratch_, p.safe_string.data(), p.safe_string.size());
        break;
    }
    std::string encoded = this->scratch_;
    this->apply_(p, encoded);
  }
}

}  // namespace esphome::data_exchange
