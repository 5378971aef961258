"""Password policy: compliant generation, no reuse, delivery, the termly change and the audit.

- `policy`: each directory's rules, the effective policy, the checker (pure)
- `generator`: random and memorable passwords from `secrets`
- `history`: salted scrypt hashes of every password the tool sets
- `settings`: the school's policy from the job's `[passwords]` section
- `issuer`: `PasswordIssuer`, used by the executor; `delivery`: slips and emails
- `termly`: the start-of-term change; `audit`: the password audit
"""

from idlifecycle.passwords.audit import Finding, password_audit
from idlifecycle.passwords.issuer import DeliveryReport, PasswordIssuer, settings_for_job
from idlifecycle.passwords.policy import Identity, Policy, Rules, Violation, check, effective_policy
from idlifecycle.passwords.settings import PasswordSettings, load_settings
from idlifecycle.passwords.termly import record_termly_results, termly_changes

__all__ = [
    "DeliveryReport", "Finding", "Identity", "PasswordIssuer", "PasswordSettings", "Policy", "Rules", "Violation",
    "check", "effective_policy", "load_settings", "password_audit", "record_termly_results", "settings_for_job",
    "termly_changes",
]
