"""The Entra ID connector: snapshot and change a school's Microsoft 365 tenant through Microsoft Graph.

The package: `connector` (the thin connector class and its HANDLERS table), `settings` (the strict
option model), `session` (sign-in, requests, retries, pacing, and REFUSALS: what each refusal
means), `batches` (the $batch pump), `snapshot` (+ `cache`, `roles`: reading the managed scope),
`requests` (pure request builders), `steps`, `creates`, `members` (sending changes).

Settings (a `connectors/*.toml` table; secrets never live there):

    name = "entra"
    type = "entra"
    tenant_id = "…"                      # Directory (tenant) ID
    client_id = "…"                      # Application (client) ID of the app registration
    certificate = "/etc/idlifecycle/entra.pem"   # public certificate; preferred over a client secret
    domains = { staff = "staff.example.sch.uk", pupil = "pupils.example.sch.uk" }
    group_marker = "Managed by idlifecycle"
    usage_location = "GB"
    hybrid = "detect"                    # or "off"
    write_limit_per_second = 20          # Graph: 3,000 writes per 2.5 minutes per app per tenant
    max_batches_in_flight = 4
    attributes = ["department", "jobTitle", "employeeType"]
    assign_licences = { pupil = ["<skuId>"] }   # optional; licence groups need nothing here
    sign_in_activity = false             # true: read last sign-ins (needs AuditLog.Read.All, Entra ID P1)
    authority_host = "login.microsoftonline.com"
    graph_url = "https://graph.microsoft.com/v1.0"
    ca_file = "…"                        # optional: a private CA to trust (TLS-inspecting proxies)
    timeout_seconds = 60                 # longest wait for the next bytes of a reply
    connect_timeout_seconds = 10         # to open a connection (TCP and TLS)
    request_timeout_seconds = 120        # one whole request, reply included (default: twice timeout_seconds)
    give_up_after_seconds = 120          # Graph answers nothing for this long: the rest of the run's changes fail

Secrets (environment or secret files, see `idlifecycle.config.Secrets`): `<name>_certificate_key`
(the PEM private key of `certificate`) or, without a certificate, `<name>_client_secret`.

Graph application permissions (least privilege, each needs admin consent): User.ReadWrite.All,
GroupMember.ReadWrite.All; Group.Create to create groups; RoleManagement.Read.Directory to know the
directory role holders (every snapshot marks them privileged, and nothing changes them) and for the
access review; LicenseAssignment.ReadWrite.All only with `assign_licences`;
AuditLog.Read.All only with `sign_in_activity`. Setting passwords also needs the app's service
principal to hold the User Administrator role (or higher): Graph refuses app-only passwordProfile
writes without it, whatever the permissions (checked once per run, see `roles.Roles.may_not_set_passwords`).

Scope: the managed accounts are the users whose sign-in name (UPN) is in one of `domains`; the
domain also tells a new account's kind (for `assign_licences`). The managed groups are those
whose description contains `group_marker` (case-insensitive); groups this tool creates carry it,
and a school hands an existing group (e.g. a licence group) to the tool by adding it to the
description. With `hybrid = "detect"`, users synchronised from on-premises AD by Entra Connect
are in scope but read-only for their synced attributes (only group membership, licences and
session revocation are written); with `"off"` they are treated as outside the scope.

Snapshots read `/users/delta` and `/groups/delta`; the delta links are kept with the state
store's cursors and the directory as last seen in `<state>/cache/entra-<name>/directory-cache.json`,
so a nightly run reads only what changed. Writes go in fully parallel JSON $batches of 20, paced
under `write_limit_per_second`, with creates never duplicated (see `creates`); a 404 on an object
this run created is replication delay and retried (`session.REPLICATION_PATIENCE`).
Each change's Result is yielded as soon as its requests are answered, not when the phase ends
(see `EntraConnector.apply`). A lost reply, a reset connection or a 5xx makes only the changes in that batch
uncertain: each is settled by reading the object back (retried, `GraphSession.lookup`) or sent
again, and a change whose earlier, unanswered attempt landed is APPLIED, not "already so". When
Graph has answered nothing for `give_up_after_seconds` (it hangs, or refuses connections) the
changes not yet answered, and any later ones this run, fail at once (retryable): a directory
that stops answering costs the run at most that long, and the other directories go on.

The demo's tenant is a connector type of its own, `type = "entra-sandbox"` (idlifecycle.sandbox.launch):
it starts the Graph emulator and hands this connector its endpoint, credentials and CA file
(`EntraConnector.on_endpoint`), so this package has no sandbox branch.
"""

from __future__ import annotations

from idlifecycle.connectors.entra.connector import EntraConnector
from idlifecycle.connectors.entra.settings import Credentials, EntraSettings

__all__ = ["Credentials", "EntraConnector", "EntraSettings"]
