"""Benchmark: what reading the privileged accounts adds to every AD snapshot, on Samba.

Run as root with samba-ad-dc installed: `.venv/bin/python bench/ad_privileged.py [--accounts 300]`.
Prints the time of the read the connector makes (protected groups' nesting walked by `memberOf`) and,
for comparison, the same answer asked with the in-chain matching rule, one search per protected group.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ldap3.utils.conv import escape_filter_chars  # noqa: E402

from idlifecycle.connectors.ad import ADConnector  # noqa: E402
from idlifecycle.connectors.ad.privileged import IN_CHAIN, privileged_in_scope, protected_groups  # noqa: E402
from idlifecycle.store import Store  # noqa: E402
from tests.integration.samba import provision_template, running_copy, unavailable_reason  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--accounts", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    reason = unavailable_reason()
    if reason:
        print(f"skipped: {reason}")
        return 0
    root = Path(tempfile.mkdtemp(prefix="bench-privileged-"))
    with running_copy(provision_template(root / "template"), root / "dc") as dc:
        conn = dc.connection()
        for i in range(args.accounts):
            conn.add(f"CN=u{i},{dc.managed_dn}", ["top", "person", "organizationalPerson", "user"],
                     {"sAMAccountName": f"u{i}", "userAccountControl": 514})
        conn.unbind()
        store = Store(root / "state.db")
        with ADConnector.from_config(dc.connector_context(store)) as ad:
            ad.snapshot()
            started = time.perf_counter()
            for _ in range(args.rounds):
                privileged_in_scope(ad.session)
            walked = (time.perf_counter() - started) / args.rounds
            groups = protected_groups(ad.session)
            started = time.perf_counter()
            for _ in range(args.rounds):
                for _, dn, _, _ in groups:
                    chain = f"(&(objectCategory=person)(memberOf:{IN_CHAIN}:={escape_filter_chars(dn)}))"
                    list(ad.session.search(ad.settings.base_dn, chain, ["objectGUID"]))
            in_chain = (time.perf_counter() - started) / args.rounds
        store.close()
    print(f"privileged accounts among {args.accounts} under base_dn: {walked * 1000:.0f} ms a snapshot "
          f"(in-chain, one search per protected group: {in_chain * 1000:.0f} ms)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
