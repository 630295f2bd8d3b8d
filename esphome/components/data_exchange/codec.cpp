#include "codec.h"

#include <cmath>
#include <cstdio>
#include <cstdlib>

namespace esphome::data_exchange {

void append_float(std::string &out, float value) {
  if (!std::isfinite(value))
    return;  // NaN and infinities are sent as unknown: no reading, no setting
  char buf[24];
  for (int precision = 6; precision <= 9; precision++) {
    snprintf(buf, sizeof(buf), "%.*g", precision, value);
    if (strtof(buf, nullptr) == value)
      break;
  }
  out += buf;
}

// Length of the well-formed UTF-8 sequence starting at s (1 to 4 bytes), 0 if the bytes
// there are not UTF-8 (stray continuation byte, truncated, overlong, surrogate, > U+10FFFF).
static size_t utf8_sequence(const uint8_t *s, size_t len) {
  uint8_t c = s[0];
  if (c < 0x80)
    return 1;
  size_t n;
  uint32_t min;
  if (c >= 0xC2 && c <= 0xDF) {
    n = 2;
    min = 0x80;
  } else if (c >= 0xE0 && c <= 0xEF) {
    n = 3;
    min = 0x800;
  } else if (c >= 0xF0 && c <= 0xF4) {
    n = 4;
    min = 0x10000;
  } else {
    return 0;
  }
  if (len < n)
    return 0;
  uint32_t cp = c & (0x7F >> n);
  for (size_t k = 1; k < n; k++) {
    if ((s[k] & 0xC0) != 0x80)
      return 0;
    cp = (cp << 6) | (s[k] & 0x3F);
  }
  if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
    return 0;
  return n;
}

void append_string(std::string &out, const char *s, size_t len) {
  static const char HEX[] = "0123456789ABCDEF";
  out += '\'';
  const auto *bytes = reinterpret_cast<const uint8_t *>(s);
  for (size_t i = 0; i < len;) {
    uint8_t c = bytes[i];
    if (c == '%' || c == ',' || c < 0x20 || c == 0x7F) {
      out += '%';
      out += HEX[c >> 4];
      out += HEX[c & 0x0F];
      i++;
      continue;
    }
    size_t n = utf8_sequence(bytes + i, len - i);
    if (n == 0) {
      // Not UTF-8 (e.g. a text sensor fed by a serial line): U+FFFD instead. The API's
      // strings must be UTF-8; one bad byte would otherwise end the connection.
      out += "\xEF\xBF\xBD";
      i++;
      continue;
    }
    out.append(s + i, n);
    i += n;
  }
}

static int hex_digit(char c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'A' && c <= 'F')
    return c - 'A' + 10;
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  return -1;
}

/// Decodes an encoded string field (with its leading quote). False if malformed (a bad
/// escape, or bytes that are not UTF-8).
bool decode_string(const std::string &field, std::string &out) {
  out.clear();
  if (field.empty() || field[0] != '\'')
    return false;
  for (size_t i = 1; i < field.size(); i++) {
    char c = field[i];
    if (c == '%') {
      if (i + 2 >= field.size())
        return false;
      int hi = hex_digit(field[i + 1]);
      int lo = hex_digit(field[i + 2]);
      if (hi < 0 || lo < 0)
        return false;
      out += static_cast<char>((hi << 4) | lo);
      i += 2;
    } else {
      out += c;
    }
  }
  // Text the API carries must be UTF-8: an escaped byte that is not (a truncated sequence,
  // a surrogate) would end up in the entity's state, and be reported as U+FFFD.
  const auto *bytes = reinterpret_cast<const uint8_t *>(out.data());
  for (size_t i = 0; i < out.size();) {
    size_t n = utf8_sequence(bytes + i, out.size() - i);
    if (n == 0)
      return false;
    i += n;
  }
  return true;
}

/// Parses a decimal unsigned 64-bit number (digits only, no sign, no spaces). False if the
/// text is not one or does not fit.
bool parse_u64(const std::string &text, uint64_t &out) {
  if (text.empty() || text.size() > 20)
    return false;
  uint64_t value = 0;
  for (char c : text) {
    if (c < '0' || c > '9')
      return false;
    uint64_t digit = static_cast<uint64_t>(c - '0');
    if (value > (UINT64_MAX - digit) / 10)
      return false;
    value = value * 10 + digit;
  }
  out = value;
  return true;
}

/// Parses a whole field as a finite float. False if it is not one.
bool parse_float(const std::string &field, float &out) {
  if (field.empty())
    return false;
  char *end = nullptr;
  out = strtof(field.c_str(), &end);
  return end == field.c_str() + field.size() && std::isfinite(out);
}

void split_fields(const std::string &values, size_t limit, std::vector<std::string> &fields) {
  fields.clear();
  size_t start = 0;
  while (true) {
    size_t comma = values.find(',', start);
    fields.emplace_back(values, start, comma == std::string::npos ? std::string::npos : comma - start);
    if (comma == std::string::npos || fields.size() > limit)
      break;
    start = comma + 1;
  }
  if (limit == 0 && values.empty())
    fields.clear();
}

}  // namespace esphome::data_exchange
