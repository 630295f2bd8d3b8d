"""Constants of the Data Exchange integration."""

from typing import Final

DOMAIN: Final = "data_exchange"
