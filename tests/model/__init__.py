"""Model-based test of the exchange rules (docs/exchange.md) against a real node."""
