"""Golden files of rendered artifacts, and the states behind them."""
