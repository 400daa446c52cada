"""The pure core: decisions from data. No SDK, no network, no clock, no environment reads."""
