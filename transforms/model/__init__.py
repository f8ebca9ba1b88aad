"""The pure event model: a Segment message to rows or a dead letter (no Beam, no cloud client)."""
