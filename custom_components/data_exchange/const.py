"""Constants of the Data Exchange integration."""

from __future__ import annotations

from typing import Final

DOMAIN: Final = "data_exchange"

CONF_NOISE_PSK: Final = "noise_psk"
CONF_DEVICE_NAME: Final = "device_name"

# Options (config entry options; defaults documented in README "Options").
# Seconds between Home Assistant's full desired frames ("cycle" means the node's frame period).
CONF_DESIRED_INTERVAL: Final = "desired_interval"
CONF_WRITER_PRIORITY_DELAY: Final = "writer_priority_delay"
CONF_STALE_AFTER: Final = "stale_after"
CONF_KEEP_VALUES: Final = "keep_values"

DEFAULT_PORT: Final = 6053
DEFAULT_DESIRED_INTERVAL: Final = 1.0  # seconds between desired frames
# A Home Assistant write wins over a node report arriving within this many seconds: long
# enough to cover a desired frame's round trip and one node cycle with margin, short enough
# that a person at the device is not overruled by an old write.
DEFAULT_WRITER_PRIORITY_DELAY: Final = 3.0
DEFAULT_STALE_AFTER: Final = 10.0  # seconds without a frame until values count as stale
DEFAULT_KEEP_VALUES: Final = (
    True  # stale values stay visible (marked) instead of unavailable
)

MIN_DESIRED_INTERVAL: Final = 0.05
MAX_DESIRED_INTERVAL: Final = 3600.0

# Prefix of the API client name: nodes send frames only to clients that introduce
# themselves with it (protocol.CLIENT_INFO_PREFIX).
CLIENT_INFO: Final = "data_exchange (Home Assistant)"

# A desired value (a write, an adopted local change, an acknowledgement) is on disk within
# this many seconds; reported values within the other; everything at stop.
STORE_DESIRED_WITHIN: Final = 1.0
# A write to a connected node is shown as pending only if the node has not applied it
# within this many seconds: one applied at once costs one state (and recorder) write, not two.
PENDING_SHOWN_AFTER: Final = 0.5
STORE_REPORTED_WITHIN: Final = 600.0

ATTR_STALE: Final = "stale"
ATTR_CHANGED_AT: Final = "changed_at"
ATTR_CHANGED_BY: Final = "changed_by"
ATTR_REPORTED_AT: Final = "reported_at"
# When the node measured the reported value (node_clock.py); ISO 8601 UTC.
ATTR_MEASURED_AT: Final = "measured_at"
ATTR_PENDING_VALUE: Final = "pending_value"
ATTR_PENDING_CHANGED_BY: Final = "pending_changed_by"
ATTR_PENDING_SINCE: Final = "pending_since"
ATTR_REASON: Final = "reason"
ATTR_POINT: Final = "point"
ATTR_FOREIGN_REQUESTS: Final = "foreign_requests"

# Config entries: 1.2 renamed the option "cycle" to "desired_interval" (__init__.py).
CONFIG_VERSION: Final = 1
CONFIG_MINOR_VERSION: Final = 2

MODE_FRAME: Final = "frame"
MODE_ENTITY: Final = "entity"
