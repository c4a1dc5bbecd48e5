"""Settings shared by every test directory."""

from hypothesis import HealthCheck, settings

# Hypothesis's per-example deadline is a wall-clock bound: on a shared, busy
# 2-core machine (or inside the TCG VM) a correct example can take longer than
# its default 200 ms. Properties here assert behaviour, never speed.
settings.register_profile("kglb", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("kglb")
