"""Test-wide settings."""

from __future__ import annotations

from hypothesis import HealthCheck, settings

# Timing-based checks fail on shared 2-core machines for reasons unrelated to zapnb; the properties still run
# with their full number of examples.
settings.register_profile("zapnb", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("zapnb")
