"""data_exchange: cyclic full-state exchange with Home Assistant's Data Exchange integration.

Once per cycle the node sends one frame with the reported values of all its points to the
Data Exchange integration's API connection (and to no other client); the integration sends
the desired values of all writable points in one API action call, applied atomically.
The wire format is documented in docs/protocol.md.
"""

import esphome.codegen as cg
import esphome.config_validation as cv
from esphome.const import CONF_ID, CONF_TIME_ID
import esphome.final_validate as fv

from esphome import automation
from esphome.components import (
    binary_sensor,
    number,
    select,
    sensor,
    switch,
    text,
    text_sensor,
    time,
)

CODEOWNERS = ["@data-exchange"]
DEPENDENCIES = ["api"]
AUTO_LOAD = ["api"]

CONF_POINTS = "points"
CONF_CYCLE = "cycle"
CONF_CHANGE_DELAY = "change_delay"
CONF_FAILSAFE_TIMEOUT = "failsafe_timeout"
CONF_SAFE_VALUE = "safe_value"
CONF_ACQUISITION = "acquisition"
CONF_KEEP_DESIRED = "keep_desired"
CONF_KEEP_DESIRED_INTERVAL = "keep_desired_interval"
# The kept record (keep.h): a header and, per writable point, a length byte and the value.
# At most 255 bytes: ESPHome's host preferences hold no more per entry.
KEEP_RECORD_MAX = 255
KEEP_HEADER = 18
KEEP_BYTES = {"number": 16, "switch": 2}
CONF_BACKLOG = "backlog"
CONF_SIZE = "size"
# 48 KiB: 4,096 readings of 12 bytes, one hour of the example ESP32 node's backlog points
# (esphome/README.md); a fixed ring allocated once at setup.
DEFAULT_BACKLOG_SIZE = 49152
BACKLOG_READING_BYTES = 12
# The point kinds a backlog can keep: their values are numbers (booleans as 0 and 1).
BACKLOG_KINDS = ("sensor", "binary_sensor", "number", "switch")

data_exchange_ns = cg.esphome_ns.namespace("data_exchange")
DataExchange = data_exchange_ns.class_("DataExchange", cg.Component)
PauseAction = data_exchange_ns.class_("PauseAction", automation.Action)
ResumeAction = data_exchange_ns.class_("ResumeAction", automation.Action)

# key -> (entity class, C++ adder, safe value validator or None for read-only points)
POINT_TYPES = {
    "sensor": (sensor.Sensor, "add_sensor", None),
    "binary_sensor": (binary_sensor.BinarySensor, "add_binary_sensor", None),
    "text_sensor": (text_sensor.TextSensor, "add_text_sensor", None),
    "number": (number.Number, "add_number", cv.float_),
    "switch": (switch.Switch, "add_switch", cv.boolean),
    "select": (select.Select, "add_select", cv.string_strict),
    "text": (text.Text, "add_text", cv.string),
}


def _validate_point(value):
    if not isinstance(value, dict):
        raise cv.Invalid("a point is a mapping with one of: " + ", ".join(POINT_TYPES))
    kinds = [k for k in POINT_TYPES if k in value]
    if len(kinds) != 1:
        raise cv.Invalid(
            "a point names exactly one entity, with one of: " + ", ".join(POINT_TYPES)
        )
    kind = kinds[0]
    cls, _, safe = POINT_TYPES[kind]
    schema = {cv.Required(kind): cv.use_id(cls)}
    if safe is not None:
        schema[cv.Optional(CONF_SAFE_VALUE)] = safe
    elif CONF_SAFE_VALUE in value:
        raise cv.Invalid(f"a {kind} is read-only and has no {CONF_SAFE_VALUE}")
    return cv.Schema(schema)(value)


def _unique_points(points):
    seen = set()
    for point in points:
        kind = next(k for k in POINT_TYPES if k in point)
        ref = (kind, str(point[kind]))
        if ref in seen:
            raise cv.Invalid(f"{kind} '{point[kind]}' is listed twice")
        seen.add(ref)
    return points


BACKLOG_SCHEMA = cv.Schema(
    {
        cv.Optional(CONF_SIZE, default=DEFAULT_BACKLOG_SIZE): cv.All(
            cv.int_, cv.Range(min=BACKLOG_READING_BYTES, max=16 * 1024 * 1024)
        ),
        # Default: every sensor point.
        cv.Optional(CONF_POINTS): cv.All(
            cv.ensure_list(cv.string_strict), cv.Length(min=1)
        ),
    }
)


def _backlog_points(config):
    """The positions of the points the backlog keeps (default: every sensor point)."""
    backlog = config.get(CONF_BACKLOG)
    if backlog is None:
        return []
    kinds = [next(k for k in POINT_TYPES if k in p) for p in config[CONF_POINTS]]
    ids = [str(p[k]) for p, k in zip(config[CONF_POINTS], kinds, strict=True)]
    if CONF_POINTS not in backlog:
        return [i for i, k in enumerate(kinds) if k == "sensor"]
    positions = []
    for name in backlog[CONF_POINTS]:
        if name not in ids:
            raise cv.Invalid(f"backlog point '{name}' is not one of the points")
        index = ids.index(name)
        if kinds[index] not in BACKLOG_KINDS:
            raise cv.Invalid(
                f"backlog point '{name}' is a {kinds[index]}; a backlog keeps "
                + ", ".join(BACKLOG_KINDS)
            )
        if index in positions:
            raise cv.Invalid(f"backlog point '{name}' is listed twice")
        positions.append(index)
    return positions


def _validate_backlog(config):
    _backlog_points(config)
    return config


CONFIG_SCHEMA = cv.Schema(
    {
        cv.GenerateID(): cv.declare_id(DataExchange),
        cv.Required(CONF_POINTS): cv.All(
            cv.ensure_list(_validate_point), cv.Length(min=1), _unique_points
        ),
        cv.Optional(CONF_CYCLE, default="1s"): cv.All(
            cv.positive_time_period_milliseconds,
            cv.Range(min=cv.TimePeriod(milliseconds=10)),
        ),
        cv.Optional(
            CONF_FAILSAFE_TIMEOUT, default="0s"
        ): cv.positive_time_period_milliseconds,
        # A change frame carries the points that changed within this window (0 ms: at
        # once, those of one main-loop pass together); the full state still goes every cycle.
        cv.Optional(CONF_CHANGE_DELAY, default="0ms"): cv.All(
            cv.positive_time_period_milliseconds,
            cv.Range(max=cv.TimePeriod(seconds=60)),
        ),
        # A time source (homeassistant, sntp, host): frames carry the node's Unix time.
        cv.Optional(CONF_TIME_ID): cv.use_id(time.RealTimeClock),
        # Desired values kept in the preferences (docs/protocol.md, "Kept desired values"):
        # a reboot while Home Assistant is away starts with them; written on change, at
        # most once per interval (flash wear: esphome/README.md).
        cv.Optional(CONF_KEEP_DESIRED, default=False): cv.boolean,
        cv.Optional(CONF_KEEP_DESIRED_INTERVAL, default="10s"): cv.All(
            cv.positive_time_period_milliseconds,
            cv.Range(min=cv.TimePeriod(seconds=1)),
        ),
        # Components that sample sensors: stopped while acquisition is paused.
        cv.Optional(CONF_ACQUISITION, default=[]): cv.ensure_list(
            cv.use_id(cg.PollingComponent)
        ),
        # Store-and-forward: readings kept while Home Assistant is away (since protocol 5).
        cv.Optional(CONF_BACKLOG): BACKLOG_SCHEMA,
    }
).extend(cv.COMPONENT_SCHEMA)
CONFIG_SCHEMA = cv.All(CONFIG_SCHEMA, _validate_backlog)


def _keep_record_bytes(config):
    """Bytes of the kept record for these points, from the entities' configurations; a
    select or text whose sizes are not in its configuration counts as 0 here (the node
    checks again at boot)."""
    full = fv.full_config.get()
    size = KEEP_HEADER
    for point in config[CONF_POINTS]:
        kind = next(k for k in POINT_TYPES if k in point)
        if kind in KEEP_BYTES:
            size += KEEP_BYTES[kind]
        elif kind in ("select", "text"):
            path = full.get_path_for_id(point[kind])[:-1]
            entity = full.get_config_for_path(path)
            if kind == "select":
                options = entity.get("options") or [""]
                size += 1 + max(len(str(o).encode()) for o in options)
            else:
                size += 1 + int(entity.get("max_length", 255))
    return size


def _final_validate(config):
    if config[CONF_KEEP_DESIRED]:
        size = _keep_record_bytes(config)
        if size > KEEP_RECORD_MAX:
            raise cv.Invalid(
                f"{CONF_KEEP_DESIRED}: the kept record would take {size} bytes, at most "
                f"{KEEP_RECORD_MAX} fit (a text counts its max_length, a select its "
                "longest option, a number 16, a switch 2, plus 18): lower max_length "
                "or keep fewer points"
            )
    return config


FINAL_VALIDATE_SCHEMA = _final_validate


async def to_code(config):
    # The frame is a Home Assistant event sent to our client only; the desired frame and
    # the model request are API actions this component registers at run time.
    cg.add_define("USE_API_HOMEASSISTANT_SERVICES")
    cg.add_define("USE_API_USER_DEFINED_ACTIONS")
    cg.add_define("USE_API_CUSTOM_SERVICES")

    var = cg.new_Pvariable(config[CONF_ID])
    await cg.register_component(var, config)
    cg.add(var.set_cycle(config[CONF_CYCLE]))
    cg.add(var.set_failsafe_timeout(config[CONF_FAILSAFE_TIMEOUT]))
    cg.add(var.set_change_delay(config[CONF_CHANGE_DELAY]))
    if CONF_TIME_ID in config:
        cg.add(var.set_time(await cg.get_variable(config[CONF_TIME_ID])))
    if config[CONF_KEEP_DESIRED]:
        # Only nodes that keep desired values compile that code (keep.cpp).
        cg.add_define("USE_DATA_EXCHANGE_KEEP")
        cg.add(var.set_keep_desired(config[CONF_KEEP_DESIRED_INTERVAL]))
    for point in config[CONF_POINTS]:
        kind = next(k for k in POINT_TYPES if k in point)
        _, adder, _ = POINT_TYPES[kind]
        entity = await cg.get_variable(point[kind])
        if CONF_SAFE_VALUE in point:
            cg.add(getattr(var, adder)(entity, True, point[CONF_SAFE_VALUE]))
        elif POINT_TYPES[kind][2] is not None:
            default = {"number": 0.0, "switch": False}.get(kind, "")
            cg.add(getattr(var, adder)(entity, False, default))
        else:
            cg.add(getattr(var, adder)(entity))
    if CONF_BACKLOG in config:
        cg.add(var.set_backlog_size(config[CONF_BACKLOG][CONF_SIZE]))
        for index in _backlog_points(config):
            cg.add(var.add_backlog_point(index))
    for comp_id in config[CONF_ACQUISITION]:
        comp = await cg.get_variable(comp_id)
        cg.add(var.add_acquisition_component(comp))


ACTION_SCHEMA = automation.maybe_simple_id({cv.GenerateID(): cv.use_id(DataExchange)})


@automation.register_action(
    "data_exchange.pause", PauseAction, ACTION_SCHEMA, synchronous=True
)
@automation.register_action(
    "data_exchange.resume", ResumeAction, ACTION_SCHEMA, synchronous=True
)
async def acquisition_action_to_code(config, action_id, template_arg, args):
    parent = await cg.get_variable(config[CONF_ID])
    return cg.new_Pvariable(action_id, template_arg, parent)
