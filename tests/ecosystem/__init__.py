"""Tests that run real outside components (SDKs, tracers, resolvers) in side environments."""
