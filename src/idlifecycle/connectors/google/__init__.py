"""Google Workspace connector: the Admin SDK Directory API through google-api-python-client.

Signs in as a service account with domain-wide delegation, impersonating an admin, with only the
scopes it uses (session.SCOPES). Reads users in the managed org units and the managed groups
(snapshot); writes in multipart batches paced under the per-minute quota (batches), retrying rate
limits, `quotaExceeded`, 429 and 5xx, waiting out the propagation delay after its own creates, and
stopping cleanly when the run cannot go on. What each documented error reason means is one table
(session.REASONS), and what reaches the caller for a refusal another (session.REFUSALS).

Configuration (connectors/google.toml), one strict model (settings.GoogleOptions): `admin`, `domains`,
`org_unit_root`, and optionally `customer`, `group_domain`, `leavers`, `managed_group_marker`,
`quota_per_minute`, `batch_size`, `timeout`, `give_up_after`, `replication_wait`, `api_endpoint`,
`secret`. The service-account key (the JSON text, or the path of the JSON file) comes from the secret
`<name>_service_account`, never from the TOML. The demo's tenant is a connector type of its own,
`type = "google-sandbox"` (idlifecycle.sandbox.launch): it starts the emulator and hands this
connector its endpoint, key and token URI, so this package has no sandbox branch.

`timeout` bounds every socket operation (connect, each read); when Google has answered nothing at
all for `give_up_after` seconds (it hangs or refuses connections), the changes not yet settled, and
every later one this run, fail at once (retryable) so the other directories go on.
"""

from idlifecycle.connectors.google.connector import GoogleConnector
from idlifecycle.connectors.google.session import SCOPES
from idlifecycle.connectors.google.settings import GoogleOptions

__all__ = ["SCOPES", "GoogleConnector", "GoogleOptions"]
