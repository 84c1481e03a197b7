"""Simulation apps: plain functions; the engine applies the Parsl decorator with the scale's
executor label."""
