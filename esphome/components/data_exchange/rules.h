#pragma once

// One rule for values (docs/exchange.md, "One rule for values"). Home Assistant's twin is
// custom_components/data_exchange/rules.py: the same operations in the same order, so both
// give the same answer for every value (tests/firmware/test_rules.py sweeps whole ranges
// through both). Header-only and free of ESPHome types, so a test can compile it alone.

#include <cmath>
#include <cstdint>

namespace esphome::data_exchange {

/// Why a desired value (or frame) is refused. The codes are the wire's (frame key "e").
enum class Refusal : uint8_t {
  NONE,
  FORMAT,       // not a value of the point's kind, or not finite
  RANGE,        // outside min..max
  STEP,         // not on a step
  OPTION,       // not an option of the select
  LENGTH,       // text length (bytes) outside its limits
  MODEL,        // frame: another model id
  COUNT,        // frame: wrong number of values
  ACQUISITION,  // frame: acquisition not -1, 0 or 1
};

inline const char *refusal_code(Refusal r) {
  switch (r) {
    case Refusal::FORMAT:
      return "format";
    case Refusal::RANGE:
      return "range";
    case Refusal::STEP:
      return "step";
    case Refusal::OPTION:
      return "option";
    case Refusal::LENGTH:
      return "length";
    case Refusal::MODEL:
      return "model";
    case Refusal::COUNT:
      return "count";
    case Refusal::ACQUISITION:
      return "acquisition";
    default:
      return "";
  }
}

/// The number check. v, lo, hi and step are what the node holds (32-bit floats); the step
/// test runs in double precision: with k = floor((v - lo) / step + 0.5), v must be within
/// step * 1e-3 + (|v| + |lo|) * 2^-21 of lo + k * step. The second term covers the float
/// rounding of v, lo and step (each within 2^-24 relative), so every value on a step as
/// written in decimal passes, however large k is.
inline Refusal check_number(float v, float lo, float hi, float step) {
  if (!std::isfinite(v))
    return Refusal::FORMAT;
  if (v < lo || v > hi)
    return Refusal::RANGE;
  if (step > 0) {
    double dv = v;
    double dlo = lo;
    double ds = step;
    double k = std::floor((dv - dlo) / ds + 0.5);
    double grid = dlo + k * ds;
    double tolerance = ds * 1e-3 + (std::fabs(dv) + std::fabs(dlo)) * 0x1p-21;
    if (std::fabs(dv - grid) > tolerance)
      return Refusal::STEP;
  }
  return Refusal::NONE;
}

}  // namespace esphome::data_exchange
