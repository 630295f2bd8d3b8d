"""Test-only ESPHome component: run one host build as many node instances.

The node test harness compiles a node once per configuration and starts it several times.
What must differ between instances is taken from the environment at start-up:
- DX_NODE_PORT: the native API port (set before the API server binds);
- DX_NODE_MAC: the MAC address, through a link-time wrap of the host platform's
  get_mac_address_raw (with name_add_mac_suffix the node name follows the MAC).
Never part of a user's firmware.
"""

import esphome.codegen as cg
import esphome.config_validation as cv
from esphome.const import CONF_ID

AUTO_LOAD = ["api"]
DEPENDENCIES = ["host"]

dx_harness_ns = cg.esphome_ns.namespace("dx_harness")
DxHarness = dx_harness_ns.class_("DxHarness", cg.Component)

CONFIG_SCHEMA = cv.Schema({cv.GenerateID(): cv.declare_id(DxHarness)})

# esphome::get_mac_address_raw(unsigned char*)
_MAC_SYMBOL = "_ZN7esphome19get_mac_address_rawEPh"


async def to_code(config):
    var = cg.new_Pvariable(config[CONF_ID])
    await cg.register_component(var, config)
    cg.add_build_flag(f"-Wl,--wrap={_MAC_SYMBOL}")
