"""Capacity planning from the real traffic shape: `python -m ops.capacity shape|calibrate|plan`."""
