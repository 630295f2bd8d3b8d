"""Test-only ESPHome component: sanitizers and heap figures for host nodes.

- ``sanitize: true`` builds the whole node with AddressSanitizer (and LeakSanitizer) and
  UndefinedBehaviorSanitizer; any undefined behaviour aborts the node
  (-fno-sanitize-recover). Reports go to the node's stderr (its log), which the tests read
  (tests/firmware/sanitizer.py).
- The API action ``dx_probe_heap`` answers with the event ``esphome.dx_probe_heap``
  (``bytes``: heap in use by the whole program: the sanitizer allocator's count in a
  sanitized build, glibc's mallinfo2 otherwise; ``source`` says which).
- ``DX_PROBE_SELFTEST=address|undefined|leak`` in the environment makes the node commit
  that fault at setup, so a test can show that a sanitizer report is noticed.
Never part of a user's firmware.
"""

import esphome.codegen as cg
import esphome.config_validation as cv
from esphome.const import CONF_ID

AUTO_LOAD = ["api"]
DEPENDENCIES = ["host", "api"]

CONF_SANITIZE = "sanitize"

dx_probe_ns = cg.esphome_ns.namespace("dx_probe")
DxProbe = dx_probe_ns.class_("DxProbe", cg.Component)

CONFIG_SCHEMA = cv.Schema(
    {
        cv.GenerateID(): cv.declare_id(DxProbe),
        cv.Optional(CONF_SANITIZE, default=False): cv.boolean,
    }
).extend(cv.COMPONENT_SCHEMA)

SANITIZER_FLAGS = [
    "-fsanitize=address,undefined",
    # Undefined behaviour ends the node at the first report instead of logging and going on.
    "-fno-sanitize-recover=all",
    "-fno-omit-frame-pointer",
    "-g",
]


async def to_code(config):
    var = cg.new_Pvariable(config[CONF_ID])
    await cg.register_component(var, config)
    # The answer is a Home Assistant event; the request an API action.
    cg.add_define("USE_API_HOMEASSISTANT_SERVICES")
    cg.add_define("USE_API_USER_DEFINED_ACTIONS")
    cg.add_define("USE_API_CUSTOM_SERVICES")
    if config[CONF_SANITIZE]:
        for flag in SANITIZER_FLAGS:
            cg.add_build_flag(flag)
