"""Prometheus exporter for Just Trades platforms that expose only the JSON monitoring endpoints."""

__version__ = "0.1.0"
