"""The `opentrack` commands: parse, check, run and report; each module is one command or its helpers."""
