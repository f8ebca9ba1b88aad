"""The `opentrack` commands: parse, check, run and report (one module per command or helper)."""
