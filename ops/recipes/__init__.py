"""Recipe tools: validate, render, vram, diff, decision (`python -m ops.recipes --help`)."""
