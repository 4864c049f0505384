"""Settings for every test of this repository (core, plugins, examples)."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

# Property tests are judged on what they generate and assert, never on how fast one example runs: on a loaded
# machine an example of the codec tests took longer than hypothesis's default 200 ms deadline, and the tests
# failed at random (DeadlineExceeded, or Flaky when the replay was fast).  The examples and their number are
# unchanged; HYPOTHESIS_PROFILE=default brings the deadline back when someone wants to measure.
settings.register_profile("gw", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "gw"))
