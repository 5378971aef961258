"""Sandbox mode for the Google connector: an emulated tenant in-process, kept in the state dir.

`sandbox = true` in the connector's TOML starts idlifecycle.sandbox.google on a free port of
127.0.0.1, with the tenant in `<state_dir>/google-sandbox/directory.json` so that the demo's
second run sees the first's changes. The service-account key pair is generated on first start
and kept beside it with mode 0600: it never enters the repository.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from idlifecycle.connectors.base import ConnectorContext
from idlifecycle.sandbox.google import GoogleEmulator, generate_service_account

if TYPE_CHECKING:
    from idlifecycle.connectors.google import GoogleConnector, GoogleOptions

SANDBOX_QUOTA_PER_MINUTE = 60_000
SANDBOX_REPLICATION_WINDOW = 5.0
"""Seconds a new user or group in the demo's tenant is not yet usable: long enough that the demo's
member adds, which follow its creates within a second or two, always meet Google's propagation
delay (the emulator's own default is shorter, to keep the test suite quick)."""


def start_sandbox(cls: type[GoogleConnector], context: ConnectorContext, options: GoogleOptions) -> GoogleConnector:
    if "quota_per_minute" not in context.options:
        # The real default would make the demo wait on a tenant that lives in this very process.
        options = replace(options, quota_per_minute=SANDBOX_QUOTA_PER_MINUTE)
    folder = Path(context.state_dir) / "google-sandbox"
    folder.mkdir(parents=True, exist_ok=True)
    key_file = folder / "service_account.json"
    # The service's rules stay on (concurrency limit, propagation delay): the demo meets them too.
    emulator = GoogleEmulator(domains=list(options.domains), state_file=folder / "directory.json",
                              quota_per_minute=options.quota_per_minute,
                              replication_window=SANDBOX_REPLICATION_WINDOW)
    emulator.start()
    try:
        info = _sandbox_key(key_file, emulator)
        directory = emulator.directory
        with emulator.lock:
            if directory.find_user(options.admin) is None:
                directory.add_user(options.admin, "School", "Administrator", secrets.token_urlsafe(18), admin=True)
            directory.add_orgunit_path(options.org_unit_root)
        emulator.mark_dirty()
        return cls(context.name, replace(options, api_endpoint=emulator.url), info, source=context.source,
                   token_uri=emulator.token_uri,
                   on_close=emulator.stop)
    except BaseException:
        emulator.stop()
        raise


def _sandbox_key(key_file: Path, emulator: GoogleEmulator) -> dict[str, str]:
    """The sandbox's service-account key, trusted by its tenant: made once, then read.

    The tenant is told of the key every start, and saved before the key file is written (both
    atomically): a run killed in its first seconds used to leave a key file its tenant had never
    saved, and every later run was refused sign-in ("Invalid JWT Signature").
    """
    from idlifecycle.connectors.google import SCOPES

    if key_file.exists():
        info: dict[str, str] = json.loads(key_file.read_text())
        emulator.add_service_account(info, list(SCOPES))
        return info
    made = key_file.with_name(key_file.name + ".new")
    info = generate_service_account(made, client_email="idlifecycle@school-sandbox.iam.gserviceaccount.com",
                                    token_uri=emulator.token_uri)
    emulator.add_service_account(info, list(SCOPES))
    emulator.save()
    os.replace(made, key_file)
    return info
