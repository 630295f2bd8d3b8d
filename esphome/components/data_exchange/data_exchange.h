#pragma once

// Cyclic full-state exchange with Home Assistant's Data Exchange integration.
// Wire format: docs/protocol.md. Vocabulary: node, point, frame, cycle, desired value,
// reported value, writer priority, stale.

#include <cstdint>
#include <string>
#include <vector>

#include "esphome/components/api/api_server.h"
#include "esphome/components/api/custom_api_device.h"
#include "esphome/core/automation.h"
#include "esphome/core/component.h"
#include "esphome/core/defines.h"
#include "clock.h"
#include "keep.h"
#include "backlog.h"
#include "rules.h"
// Only the entity types a node has are compiled (USE_<TYPE> comes from ESPHome).
#ifdef USE_SENSOR
#include "esphome/components/sensor/sensor.h"
#endif
#ifdef USE_BINARY_SENSOR
#include "esphome/components/binary_sensor/binary_sensor.h"
#endif
#ifdef USE_TEXT_SENSOR
#include "esphome/components/text_sensor/text_sensor.h"
#endif
#ifdef USE_NUMBER
#include "esphome/components/number/number.h"
#endif
#ifdef USE_SWITCH
#include "esphome/components/switch/switch.h"
#endif
#ifdef USE_SELECT
#include "esphome/components/select/select.h"
#endif
#ifdef USE_TEXT
#include "esphome/components/text/text.h"
#endif

namespace esphome::data_exchange {

/// Protocol version carried in every frame (key "v").
#ifndef DX_PROTOCOL_VERSION
#define DX_PROTOCOL_VERSION 5  // tests build an older one to see Home Assistant refuse it
#endif
static constexpr uint8_t PROTOCOL_VERSION = DX_PROTOCOL_VERSION;
/// Frames go only to API clients whose Hello names them with this prefix.
static constexpr const char *CLIENT_PREFIX = "data_exchange";
static constexpr const char *FRAME_EVENT = "esphome.data_exchange";
static constexpr const char *MODEL_EVENT = "esphome.data_exchange_model";
static constexpr const char *WRITE_ACTION = "data_exchange_write";
static constexpr const char *DESCRIBE_ACTION = "data_exchange_describe";

/// Point types; the character is the type code in the model description.
enum class PointType : char {
  SENSOR = 'S',
  BINARY_SENSOR = 'B',
  TEXT_SENSOR = 'T',
  NUMBER = 'N',
  SWITCH = 'W',
  SELECT = 'L',
  TEXT = 'X',
};

struct Point {
  PointType type;
  EntityBase *entity;
  bool has_safe_value{false};
  float safe_number{0};
  bool safe_bool{false};
  std::string safe_string;
  // Writable points only: the encoded value this node last applied or reported, to tell a
  // local change from the effect of a desired frame, and the sequence number of the node
  // frame that first reported the latest local change.
  std::string expected;
  bool expected_valid{false};
  uint64_t local_change_seq{0};
  // While the fail-safe is active: this point holds the safe value the fail-safe set (no
  // local change since); reported in full frames ("y") so Home Assistant tells the two apart.
  bool at_safe_value{false};
  // Published since the last frame: goes out in the next change frame.
  bool changed{false};
  // Kept in the backlog while no client takes live frames (option backlog: points).
  bool in_backlog{false};

  bool writable() const {
    return type == PointType::NUMBER || type == PointType::SWITCH || type == PointType::SELECT ||
           type == PointType::TEXT;
  }
};

class DataExchange : public Component, public api::CustomAPIDevice {
 public:
  void setup() override;
  void loop() override;
  void dump_config() override;
  float get_setup_priority() const override { return setup_priority::AFTER_CONNECTION; }

  void set_cycle(uint32_t ms) { this->cycle_ms_ = ms; }
  void set_failsafe_timeout(uint32_t ms) { this->failsafe_ms_ = ms; }
  void set_change_delay(uint32_t ms) { this->change_delay_ms_ = ms; }
#ifdef USE_TIME
  /// `time_id:`: frames carry the node's Unix time (key "d") while this clock is valid.
  void set_time(time::RealTimeClock *time) { this->clock_.set_time(time); }
#endif
#ifdef USE_DATA_EXCHANGE_KEEP
  /// Keep the desired values in the preferences, written at most every `interval_ms` (keep.h).
  void set_keep_desired(uint32_t interval_ms) { this->keep_.interval_ms = interval_ms; }
  void on_shutdown() override;
#endif
#ifdef USE_SENSOR
  void add_sensor(sensor::Sensor *s) { this->add_point_(PointType::SENSOR, s); }
#endif
#ifdef USE_BINARY_SENSOR
  void add_binary_sensor(binary_sensor::BinarySensor *s) { this->add_point_(PointType::BINARY_SENSOR, s); }
#endif
#ifdef USE_TEXT_SENSOR
  void add_text_sensor(text_sensor::TextSensor *s) { this->add_point_(PointType::TEXT_SENSOR, s); }
#endif
#ifdef USE_NUMBER
  void add_number(number::Number *n, bool has_safe, float safe);
#endif
#ifdef USE_SWITCH
  void add_switch(switch_::Switch *s, bool has_safe, bool safe);
#endif
#ifdef USE_SELECT
  void add_select(select::Select *s, bool has_safe, const char *safe);
#endif
#ifdef USE_TEXT
  void add_text(text::Text *t, bool has_safe, const char *safe);
#endif
  void add_acquisition_component(PollingComponent *c) { this->acquisition_.push_back(c); }
  /// Store-and-forward (replay.cpp): the ring's size in bytes, and the points it covers.
  void set_backlog_size(uint32_t bytes) { this->backlog_bytes_ = bytes; }
  void add_backlog_point(size_t index) { this->points_[index].in_backlog = true; }
  const Backlog &get_backlog() const { return this->backlog_; }

  /// Pause or resume sampling; frames keep flowing and say so.
  void set_acquisition(bool running);
  bool is_acquisition_running() const { return this->acquisition_running_; }
  bool is_failsafe_active() const { return this->failsafe_active_; }
  uint32_t get_model_id() const { return this->model_id_; }
  /// Where the frame counter stands. Tests start it near a limit (tests/nodes/counters.yaml).
  void set_frame_seq(uint64_t seq) { this->seq_ = seq; }
  uint64_t get_frame_seq() const { return this->seq_; }

  // API actions (registered at setup). Public for the action registry.
  // Sequence numbers arrive as decimal strings: the API's integer arguments are 32-bit.
  // `token` is this boot's secret, sent only to Data Exchange clients (model event key "k"):
  // a desired frame from any other client (another integration exposing the node's actions,
  // an automation) is counted and ignored.
  void on_write(std::string token, std::string seq, std::string seen, std::string model, std::string values,
                int32_t acquisition, std::string backlog);
  void on_describe();

 protected:
  void add_point_(PointType type, EntityBase *entity);
  void compute_model_();
  /// Appends the encoded reported value of a point to out.
  void encode_point_(const Point &p, std::string &out);
  void detect_local_changes_();
  void send_frame_();
  /// Registers for the entity's state changes: a change goes out in a change frame.
  void watch_point_(size_t index);
  void mark_changed_(size_t index);
  void send_changes_();
  void send_node_frame_(const std::string *indices);
  void send_event_(const char *name, const char *const *keys, const std::string *values, size_t count);
  bool has_client_() const;
  void restart_cycle_();
  void set_acquisition_(bool running);
  void arm_failsafe_();
  void enter_failsafe_();
  void append_safe_points_(std::string &out) const;
  /// Rewrites a validated desired value the way this node encodes it.
  void canonicalize_(const Point &p, std::string &field);
  /// Sets a writable point from an encoded value already validated.
  bool apply_(Point &p, const std::string &encoded);
  Refusal validate_(const Point &p, const std::string &field);
  void refuse_(uint64_t seq, Refusal reason, int point);
#ifdef USE_DATA_EXCHANGE_KEEP
  // Kept desired values (keep.cpp).
  size_t keep_point_bytes_(const Point &p) const;
  bool keep_build_(std::vector<uint8_t> &out);
  void keep_setup_();
  void keep_load_();
  void keep_note_();
  void keep_write_();
  KeepState keep_;
#endif
  // Store-and-forward hooks (replay.cpp).
  void setup_backlog_();
  void record_backlog_(size_t index);
  void loop_backlog_();
  void send_backlog_();
  void backlog_connected_();
  void backlog_acknowledged_(uint64_t seq);

  std::vector<Point> points_;
  std::vector<PollingComponent *> acquisition_;
  size_t writable_count_{0};
  uint32_t cycle_ms_{1000};
  uint32_t failsafe_ms_{0};
  uint32_t change_delay_ms_{0};
  bool any_changed_{false};     // a point changed since the last frame
  bool flush_deferred_{false};  // change_delay 0: a change frame is due after this pass
  uint32_t first_change_ms_{0};  // when the first of them changed
  uint32_t model_id_{0};
  char model_hex_[9]{};
  std::string model_points_;  // model description, built once
  std::string boot_id_;       // random per boot: tells Home Assistant of a restart
  std::string token_;         // random per boot: only Data Exchange clients know it
  uint64_t foreign_requests_{0};  // desired frames from other clients, ignored

  // Every counter is 64-bit: at a 10 ms cycle a 32-bit frame number wraps after 497 days.
  uint64_t seq_{0};             // last node frame sent
  uint32_t last_frame_ms_{0};   // when it was sent (millis(); differences are wrap-safe)
  uint64_t applied_seq_{0};     // last desired frame applied
  uint64_t refused_frames_{0};  // desired frames refused since boot
  uint64_t acquisition_local_seq_{0};
  // The last refusal as sent in frames ("seq:point:reason", point empty for the frame), and
  // what was last logged as a warning: a refusal repeated every cycle is logged once.
  std::string last_refusal_;
  int logged_refusal_point_{-2};
  Refusal logged_refusal_{Refusal::NONE};
  bool acquisition_running_{true};
  bool failsafe_active_{false};

  // Buffers reused every cycle, so a frame allocates nothing once they have grown.
  std::string values_buf_;
  std::string indices_buf_;
  std::string ages_buf_;  // key "w": the age of each value (clock.h)
  MeasurementClock clock_;
  std::string scratch_;
  std::vector<std::string> fields_;

  // Store-and-forward (replay.cpp); off while backlog_bytes_ is 0.
  Backlog backlog_;
  uint32_t backlog_bytes_{0};
  bool backlog_live_{false};  // a client took a desired frame on this connection
  std::string backlog_buf_;   // the readings text of a backlog frame, reused
};

template<typename... Ts> class PauseAction : public Action<Ts...>, public Parented<DataExchange> {
 public:
  explicit PauseAction(DataExchange *parent) : Parented<DataExchange>(parent) {}
  void play(const Ts &...x) override { this->parent_->set_acquisition(false); }
};

template<typename... Ts> class ResumeAction : public Action<Ts...>, public Parented<DataExchange> {
 public:
  explicit ResumeAction(DataExchange *parent) : Parented<DataExchange>(parent) {}
  void play(const Ts &...x) override { this->parent_->set_acquisition(true); }
};

}  // namespace esphome::data_exchange
