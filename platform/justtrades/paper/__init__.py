"""The paper trading service: status of the round trips the paper broker opens and closes."""
