"""Steering a VLM's vision tower: the hook (`hook.steer`, the reference path and the one-feature
loop), the engine that batches features over one `generate` (`engine.SteeringEngine`, what every
method answers through, world or real), and what steering is given besides a feature (`inputs`)."""
