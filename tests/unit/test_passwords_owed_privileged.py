"""An owed password is never set afresh on a person who holds an admin role anywhere a password reaches."""

from pathlib import Path

from idlifecycle.model import Snapshot
from idlifecycle.passwords.owed import owed_changes
from idlifecycle.store import Store
from tests.factories import account, staff

PERSON = staff("S1", "Ian", "Tadmin")


def _owed(tmp_path: Path) -> Store:
    store = Store(tmp_path / "state.db")
    with store.transaction():
        store.owe_password("S1", "ad", "itadmin", "new account")
    return store


def test_an_owed_ad_password_is_not_set_when_the_synced_entra_account_is_an_admin(tmp_path: Path) -> None:
    store = _owed(tmp_path)
    try:
        ad = account("a1", "itadmin", anchor="S1", directory="ad")
        entra = account("e1", "itadmin", anchor="S1", directory="entra", synced_from_on_premises=True,
                        privileged="Global Administrator")
        snapshots = {"ad": Snapshot("ad", (ad,), ()), "entra": Snapshot("entra", (entra,), ())}
        assert owed_changes(store, snapshots, {"S1": PERSON}, []) == []
        assert store.owed_passwords() == []  # settled: the tool cannot deliver it, a person must
        refused = [e.data for e in store.audit_entries() if e.event == "password-not-set"]
        assert len(refused) == 1 and "Global Administrator" in refused[0]["reason"]
    finally:
        store.close()


def test_an_owed_password_of_an_ordinary_account_is_set_afresh(tmp_path: Path) -> None:
    store = _owed(tmp_path)
    try:
        ad = account("a1", "itadmin", anchor="S1", directory="ad")
        entra = account("e1", "itadmin", anchor="S1", directory="entra", synced_from_on_premises=True)
        snapshots = {"ad": Snapshot("ad", (ad,), ()), "entra": Snapshot("entra", (entra,), ())}
        changes = owed_changes(store, snapshots, {"S1": PERSON}, [])
        assert [(c.directory, c.action.value, c.target) for c in changes] == [("ad", "set-password", "a1")]
        assert len(store.owed_passwords()) == 1
    finally:
        store.close()
