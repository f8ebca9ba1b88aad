"""The pure event model: a Segment message to rows or a dead letter, with no Beam and no cloud client."""
