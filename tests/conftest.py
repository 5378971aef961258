"""Every test school has an audit key, given as a school gives it: the environment of the process that runs
the tool (a systemd unit's Environment= or LoadCredential, a cron line). Subprocesses inherit it.

Set at import, before any fixture builds a job; a test of a job without the key removes it (monkeypatch).
"""

import os

TEST_AUDIT_KEY = "test-school-audit-key-0123456789abcdef0123456789abcdef"

os.environ.setdefault("IDLIFECYCLE_AUDIT_KEY", TEST_AUDIT_KEY)
