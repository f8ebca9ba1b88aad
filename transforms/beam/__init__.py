"""Beam transforms: the DoFns and composites that run the event model and the warehouse."""
