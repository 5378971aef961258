"""Change ids and snapshot fingerprints are journal keys and stale-plan checks: the encoder made once for speed
must write exactly what json.dumps writes, or a saved plan's ids and fingerprints would no longer match."""

import dataclasses
import hashlib
import inspect
import json
from datetime import date, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from idlifecycle.model import Account, Action, Change, DesiredAccount, Group, Kind, Person, Snapshot
from idlifecycle.values import json_encoder

SCALARS = (st.text() | st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
           | st.dates() | st.datetimes())
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4)
                      | st.tuples(inner, inner), max_leaves=12)


@given(VALUES)
def test_the_encoder_writes_what_json_dumps_writes(value):
    assert json_encoder()([value]) == json.dumps([value], default=str)
    assert json_encoder(sort_keys=True)([value]) == json.dumps([value], default=str, sort_keys=True)


def test_a_change_id_is_the_digest_of_its_json():
    change = Change("entra", Action.UPDATE, "000231", "19asmith", "name changed in the MIS", target="k-1",
                    after={"surname": "Smith-Jones", "attributes": {"department": "Year 7", "b": date(2026, 9, 1)}})
    payload = json.dumps(["entra", Action.UPDATE, "000231", "k-1", None,
                          sorted(change.after.items())], default=str, sort_keys=True)
    assert change.change_id == hashlib.sha256(payload.encode()).hexdigest()[:24]


def test_a_fingerprint_is_the_digest_of_each_accounts_json():
    account = Account("entra", "k-1", "19asmith", "19asmith@pupils.example.sch.uk", "Zoë", "Adams", "Zoë Adams",
                      "000231", True, "Pupils/Year 7", {"department": "7A", "employeeType": "pupil"},
                      created=datetime(2025, 9, 1, 8, 0))
    snapshot = Snapshot("entra", (account,), (Group("entra", "g-1", "Year 7", {"k-1": "Zoë Adams"}),),
                        frozenset({"admin"}))
    digest = hashlib.sha256()
    digest.update(json.dumps(["k-1", "19asmith", "19asmith@pupils.example.sch.uk", "Zoë", "Adams", "Zoë Adams",
                              "000231", True, "Pupils/Year 7", [["department", "7A"], ["employeeType", "pupil"]],
                              False, False, ""], default=str).encode())
    digest.update(json.dumps(["g-1", "Year 7", ["k-1"]]).encode())
    digest.update(json.dumps(["admin"]).encode())
    assert snapshot.fingerprint() == digest.hexdigest()[:32]


def test_a_fingerprint_is_made_once_and_a_changed_copy_gets_its_own():
    account = Account("entra", "k-1", "19asmith", "19asmith@pupils.example.sch.uk", "Zoë", "Adams", "Zoë Adams",
                      "000231", True)
    snapshot = Snapshot("entra", (account,), ())
    made = snapshot.fingerprint()
    assert snapshot.__dict__["_fingerprint"] == made and snapshot.fingerprint() == made
    disabled = dataclasses.replace(snapshot, accounts=(dataclasses.replace(account, enabled=False),))
    assert disabled.fingerprint() != made
    assert snapshot == Snapshot("entra", (account,), ())  # the cache is no field: equality is the values'


@pytest.mark.parametrize("cls", [Person, DesiredAccount])
def test_values_made_through_their_slots_take_the_dataclass_parameters(cls):
    parameters = list(inspect.signature(cls.__init__).parameters.values())[1:]
    assert [p.name for p in parameters] == [f.name for f in dataclasses.fields(cls)]
    for parameter, declared in zip(parameters, dataclasses.fields(cls), strict=True):
        if declared.default is not dataclasses.MISSING:
            assert parameter.default == declared.default
        elif declared.default_factory is dataclasses.MISSING:
            assert parameter.default is inspect.Parameter.empty


def test_values_made_through_their_slots_stay_frozen_dataclasses():
    person = Person("000231", Kind.PUPIL, "Zoë", "Adams", year_group="7")
    assert (person.preferred_first_name, person.roles, person.source, person.year_group) == (None, (), "", "7")
    smith = Person("000231", Kind.PUPIL, "Zoë", "Smith", year_group="7")
    assert dataclasses.replace(person, last_name="Smith") == smith
    with pytest.raises(dataclasses.FrozenInstanceError):
        person.last_name = "Smith"  # type: ignore[misc]
    first = DesiredAccount("entra", "1", Kind.PUPIL, "u", "u@x", "Zoë", "Adams", "Zoë Adams", "", frozenset())
    second = DesiredAccount("entra", "1", Kind.PUPIL, "u", "u@x", "Zoë", "Adams", "Zoë Adams", "", frozenset())
    assert first == second and first.attributes == {} and first.attributes is not second.attributes
    assert first.enabled is True
