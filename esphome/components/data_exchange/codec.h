#pragma once

// The value codec of the protocol (docs/protocol.md, "Values"): how a point's value is
// written into a frame and how the fields of a desired frame are read. Fields are separated
// by ','. An empty field is an unknown value (or, in a desired frame, "no desired value").
// Numbers use the shortest decimal that reads back as the same float; booleans are 0/1;
// strings (text, text sensor, select option) start with '\'' and escape '%', ',' and control
// characters as %XX.
//
// Free of ESPHome types (only the C++ library), so a test can compile it alone
// (tests/firmware/test_rules.py).

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace esphome::data_exchange {

/// Appends the shortest decimal (%.6g to %.9g) that reads back as `value`; nothing for NaN
/// and infinities (sent as unknown).
void append_float(std::string &out, float value);

/// Appends `len` bytes of `s` as an encoded string field (with its leading quote). Bytes
/// that are not UTF-8 become U+FFFD.
void append_string(std::string &out, const char *s, size_t len);

/// Decodes an encoded string field (with its leading quote) into `out`. False if malformed:
/// a bad escape, or bytes (escaped or not) that are not UTF-8.
bool decode_string(const std::string &field, std::string &out);

/// Parses a decimal unsigned 64-bit number (digits only, no sign, no spaces). False if the
/// text is not one or does not fit.
bool parse_u64(const std::string &text, uint64_t &out);

/// Parses a whole field as a finite float. False if it is not one.
bool parse_float(const std::string &field, float &out);

/// Splits a desired frame's values at ',' into `fields`, stopping once there are more than
/// `limit` (the frame is then refused for its count anyway: the work per frame is bounded by
/// the number of writable points, not by what a peer sends). No field at all for an empty
/// text when `limit` is 0.
void split_fields(const std::string &values, size_t limit, std::vector<std::string> &fields);

}  // namespace esphome::data_exchange
