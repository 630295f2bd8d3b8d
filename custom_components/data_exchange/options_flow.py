"""Options flow: cycle, writer priority delay, staleness and what stale values look like."""

from __future__ import annotations

import math
from typing import Any

from homeassistant.config_entries import ConfigFlowResult, OptionsFlowWithReload
from homeassistant.helpers.selector import (
    BooleanSelector,
    NumberSelector,
    NumberSelectorConfig,
    NumberSelectorMode,
)
import probatio

from .const import (
    CONF_DESIRED_INTERVAL,
    CONF_KEEP_VALUES,
    CONF_STALE_AFTER,
    CONF_WRITER_PRIORITY_DELAY,
    DEFAULT_DESIRED_INTERVAL,
    DEFAULT_KEEP_VALUES,
    DEFAULT_STALE_AFTER,
    DEFAULT_WRITER_PRIORITY_DELAY,
    MAX_DESIRED_INTERVAL,
    MIN_DESIRED_INTERVAL,
)


class DataExchangeOptionsFlow(OptionsFlowWithReload):
    """Cycle, writer priority delay, staleness and what stale values look like."""

    async def async_step_init(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        errors: dict[str, str] = {}
        if user_input is not None:
            # The number selector checks the range, but NaN is in every range.
            errors = {
                field: "invalid_number"
                for field in (
                    CONF_DESIRED_INTERVAL,
                    CONF_WRITER_PRIORITY_DELAY,
                    CONF_STALE_AFTER,
                )
                if not math.isfinite(user_input[field])
            }
            if (
                not errors
                and user_input[CONF_STALE_AFTER] <= user_input[CONF_DESIRED_INTERVAL]
            ):
                errors[CONF_STALE_AFTER] = "stale_after_too_short"
            if not errors:
                return self.async_create_entry(data=user_input)
        options = self.config_entry.options

        def seconds(minimum: float, maximum: float, step: float) -> NumberSelector:
            return NumberSelector(
                NumberSelectorConfig(
                    min=minimum,
                    max=maximum,
                    step=step,
                    unit_of_measurement="s",
                    mode=NumberSelectorMode.BOX,
                )
            )

        schema = probatio.Schema(
            {
                probatio.Required(
                    CONF_DESIRED_INTERVAL,
                    default=options.get(
                        CONF_DESIRED_INTERVAL, DEFAULT_DESIRED_INTERVAL
                    ),
                ): seconds(MIN_DESIRED_INTERVAL, MAX_DESIRED_INTERVAL, 0.05),
                probatio.Required(
                    CONF_WRITER_PRIORITY_DELAY,
                    default=options.get(
                        CONF_WRITER_PRIORITY_DELAY, DEFAULT_WRITER_PRIORITY_DELAY
                    ),
                ): seconds(0, 600, 0.1),
                probatio.Required(
                    CONF_STALE_AFTER,
                    default=options.get(CONF_STALE_AFTER, DEFAULT_STALE_AFTER),
                ): seconds(1, 86400, 1),
                probatio.Required(
                    CONF_KEEP_VALUES,
                    default=options.get(CONF_KEEP_VALUES, DEFAULT_KEEP_VALUES),
                ): BooleanSelector(),
            }
        )
        return self.async_show_form(
            step_id="init",
            data_schema=self.add_suggested_values_to_schema(schema, user_input),
            errors=errors,
        )
