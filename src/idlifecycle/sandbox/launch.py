"""The demo's directories as connector types of their own: `type = "entra-sandbox"` and `"google-sandbox"`.

Each starts its emulator in-process on a free port of 127.0.0.1, with its data in the job's sandbox
folder (`<state_dir>/sandbox/`, so the demo's second run sees the first's changes), and hands the
*real* connector (EntraConnector, GoogleConnector) the emulator's endpoint, credentials and CA file:
the production connectors have no sandbox branch, and the demo still goes through msal and
msgraph-sdk, or google-api-python-client. Generated secrets and keys are kept there with mode 0600;
they never enter the repository.

`connectors.base.CONNECTOR_TYPES` names these classes by module path, so this module is imported only
when a job names a sandbox type. Neither class is ever an instance: `from_config` returns the real
connector, stopping the emulator when that connector closes.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Callable, Collection
from dataclasses import replace
from pathlib import Path
from typing import ClassVar

from idlifecycle.connectors.base import Capabilities, Connector, ConnectorContext
from idlifecycle.connectors.entra import Credentials, EntraConnector
from idlifecycle.connectors.google import GoogleConnector, GoogleOptions
from idlifecycle.connectors.google.roles import ROLES_SCOPE
from idlifecycle.connectors.google.session import scopes_for
from idlifecycle.errors import ConfigError
from idlifecycle.sandbox.google import GoogleEmulator, generate_service_account
from idlifecycle.sandbox.graph import GraphEmulator, open_directory
from idlifecycle.sandbox.tls import write_private

GRAPH_CLIENT_ID = "idlifecycle-sandbox"

GOOGLE_QUOTA_PER_MINUTE = 60_000
GOOGLE_REPLICATION_WINDOW = 5.0
"""Seconds a new user or group in the demo's tenant is not yet usable: long enough that the demo's
member adds, which follow its creates within a second or two, always meet Google's propagation
delay (the emulator's own default is shorter, to keep the test suite quick)."""


class EntraSandbox(Connector):
    """The demo's Microsoft 365 tenant: the Graph emulator over HTTPS, with a client secret made once.

    Options: those of `type = "entra"` but the sign-in and endpoint ones (the launcher supplies them),
    and `seed = "file.json"` (relative to the TOML file): the tenant a fresh state starts from.
    """

    capabilities: ClassVar[Capabilities] = EntraConnector.capabilities
    option_keys: ClassVar[frozenset[str]] = (EntraConnector.option_keys - {
        "authority_host", "ca_file", "certificate", "client_id", "graph_url", "tenant_id",
    }) | {"seed"}

    @classmethod
    def from_config(cls, context: ConnectorContext) -> EntraConnector:
        # `seed` is the launcher's own key; the rest are the connector's, checked by its strict model.
        settings = EntraConnector.read_settings(
            replace(context, options={k: v for k, v in context.options.items() if k != "seed"}))
        credentials, graph_url, ca_file, stop = _start_graph(context, settings.domains.values())
        return EntraConnector.on_endpoint(context, settings, credentials, graph_url, ca_file, stop=stop)


def _start_graph(context: ConnectorContext,
                 domains: Collection[str]) -> tuple[Credentials, str, str, Callable[[], None]]:
    """The emulator on a free port, its data and client secret (0600) in `<state_dir>/entra-<name>/`."""
    home = context.state_dir / f"entra-{context.name}"
    seed = context.option("seed")
    seed_path: Path | None = None
    if seed:
        seed_path = Path(str(seed))
        if not seed_path.is_absolute():
            seed_path = Path(context.source).parent / seed_path
        if not seed_path.exists():
            raise ConfigError(context.source, "seed", f"no such file: {seed_path}")
    home.mkdir(parents=True, exist_ok=True)
    secret_file = home / "client_secret"
    if not secret_file.exists():
        write_private(secret_file, secrets.token_urlsafe(32).encode())
    secret = secret_file.read_text(encoding="ascii").strip()
    try:
        directory = open_directory(home / "graph-state.json", seed_path, domains=domains)
    except (ValueError, KeyError) as error:
        raise ConfigError(context.source, "seed", f"{seed_path}: {error}") from None
    emulator = GraphEmulator(directory, tls_dir=home / "tls", state_file=home / "graph-state.json")
    emulator.register_application(GRAPH_CLIENT_ID, secret=secret)
    emulator.start()
    assert emulator.certificate is not None
    credentials = Credentials(emulator.tenant_id, GRAPH_CLIENT_ID, f"127.0.0.1:{emulator.port}",
                              client_secret=secret, where=str(secret_file), config_file=context.source)
    return credentials, emulator.graph_url, str(emulator.certificate.cert), emulator.stop


class GoogleSandbox(Connector):
    """The demo's Google Workspace: the Directory API emulator, with a service-account key made once.

    Options: those of `type = "google"` but the endpoint and key ones (the launcher supplies them).
    The tenant is kept in `<state_dir>/google-sandbox/directory.json`.
    """

    capabilities: ClassVar[Capabilities] = GoogleConnector.capabilities
    option_keys: ClassVar[frozenset[str]] = GoogleConnector.option_keys - {"api_endpoint", "secret", "token_uri"}

    @classmethod
    def from_config(cls, context: ConnectorContext) -> GoogleConnector:
        options = GoogleOptions.read(context)
        if "quota_per_minute" not in context.options:
            # The real default would make the demo wait on a tenant that lives in this very process.
            options = options.model_copy(update={"quota_per_minute": GOOGLE_QUOTA_PER_MINUTE})
        folder = Path(context.state_dir) / "google-sandbox"
        folder.mkdir(parents=True, exist_ok=True)
        # The service's rules stay on (concurrency limit, propagation delay): the demo meets them too.
        emulator = GoogleEmulator(domains=list(options.domains), state_file=folder / "directory.json",
                                  quota_per_minute=options.quota_per_minute,
                                  replication_window=GOOGLE_REPLICATION_WINDOW)
        emulator.start()
        try:
            # The demo's delegation holds every scope its options ask for, the review's own one too.
            scopes = scopes_for(options) + ((ROLES_SCOPE,) if options.read_admin_roles else ())
            info = _google_key(folder / "service_account.json", emulator, scopes)
            directory = emulator.directory
            with emulator.lock:
                if directory.find_user(options.admin) is None:
                    directory.add_user(options.admin, "School", "Administrator", secrets.token_urlsafe(18),
                                       admin=True)
                if options.transfer_to and directory.find_user(options.transfer_to) is None:
                    # The demo's archive account: leavers' Drive and Calendar go there before their delete.
                    directory.add_user(options.transfer_to, "School", "Archive", secrets.token_urlsafe(18))
                directory.add_orgunit_path(options.org_unit_root)
            emulator.mark_dirty()
            return GoogleConnector(context, options.model_copy(update={"api_endpoint": emulator.url}), info,
                                   token_uri=emulator.token_uri, on_close=emulator.stop)
        except BaseException:
            emulator.stop()
            raise


def _google_key(key_file: Path, emulator: GoogleEmulator, scopes: tuple[str, ...]) -> dict[str, str]:
    """The sandbox's service-account key, trusted by its tenant: made once, then read.

    The tenant is told of the key every start, and saved before the key file is written (both
    atomically): a run killed in its first seconds used to leave a key file its tenant had never
    saved, and every later run was refused sign-in ("Invalid JWT Signature").
    """
    if key_file.exists():
        info: dict[str, str] = json.loads(key_file.read_text())
        emulator.add_service_account(info, list(scopes))
        return info
    made = key_file.with_name(key_file.name + ".new")
    info = generate_service_account(made, client_email="idlifecycle@school-sandbox.iam.gserviceaccount.com",
                                    token_uri=emulator.token_uri)
    emulator.add_service_account(info, list(scopes))
    emulator.save()
    os.replace(made, key_file)
    return info
