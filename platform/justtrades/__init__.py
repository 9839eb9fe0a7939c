"""Just Trades platform core: TradingView webhooks to broker orders, with health endpoints and Prometheus metrics."""

__version__ = "0.1.0"
