"""The password checker and generator against a real Samba AD DC: what we generate the DC accepts,
and what the checker refuses for length or complexity the DC refuses too."""
# ruff: noqa: F811 - pytest fixtures imported from tests.integration.samba are parameters here

from __future__ import annotations

import string
import time
from collections.abc import Iterator

import ldap3
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from idlifecycle.connectors.ad import ADConnector
from idlifecycle.model import Action, Change, Kind, Outcome, Person
from idlifecycle.passwords.generator import generate
from idlifecycle.passwords.issuer import PasswordIssuer, rules_of
from idlifecycle.passwords.policy import (
    CommonPasswords,
    Identity,
    Rules,
    check,
    effective_policy,
    entra_rules,
    google_rules,
)
from idlifecycle.store import Store
from tests.integration.samba import DomainController, samba_dc, samba_template  # noqa: F401 - fixtures

pytestmark = pytest.mark.samba

SCHOOL_STAFF = Rules("the school", min_length=12, classes=3, symbols=frozenset("!#$%*+-=?@"), name_tokens=True)
SCHOOL_PUPILS = Rules("the school", min_length=8, classes=3, symbols=frozenset("!#$%*+-=?@"), name_tokens=True)
DOMAIN_RULES = ("length", "classes")
"""The rules a DC enforces itself; the name rule is the tool's (Samba does not check it)."""


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    s = Store(tmp_path_factory.mktemp("passwords") / "state.db")
    yield s
    s.close()


@pytest.fixture(scope="module")
def ad(samba_dc: DomainController, store: Store) -> Iterator[ADConnector]:
    connector = ADConnector.from_config(samba_dc.connector_context(store))
    yield connector
    connector.close()


@pytest.fixture(scope="module")
def test_user(ad: ADConnector) -> tuple[str, str]:
    """A pupil account whose password the tests reset over and over: (objectGUID key, DN)."""
    create = Change("ad", Action.CREATE, "P5001", "ksamba", "new starter", after={
        "username": "ksamba", "login": "ksamba@test.example.com", "given_name": "Kit", "surname": "Samba",
        "display_name": "Kit Samba", "container": "Pupils/Year 3", "attributes": {}, "enabled": True,
        "anchor": "P5001", "must_change_password": False}, password="Start-Here-1234")
    [result] = list(ad.apply([create]))
    assert result.outcome is Outcome.APPLIED, result.detail
    assert result.key
    return result.key, f"<GUID={result.key}>"


def admin_reset(dc: DomainController, dn: str, password: str) -> dict[str, object]:
    """The raw admin reset (one REPLACE of unicodePwd), for the DC's own result and marker."""
    conn = dc.connection()
    conn.modify(dn, {"unicodePwd": [(ldap3.MODIFY_REPLACE, [f'"{password}"'.encode("utf-16-le")])]})
    result = dict(conn.result)
    conn.unbind()
    return result


def test_domain_reports_its_own_password_rules(ad: ADConnector) -> None:
    rules = rules_of({"ad": ad})["ad"]
    assert (rules.min_length, rules.classes, rules.name_tokens) == (7, 3, True)


@pytest.mark.slow
def test_two_thousand_generated_passwords_are_accepted_on_admin_reset(
        samba_dc: DomainController, ad: ADConnector, test_user: tuple[str, str]) -> None:
    key, dn = test_user
    domain = rules_of({"ad": ad})["ad"]
    identity = Identity("ksamba", "Kit Samba", ("Kit", "Samba"))
    common = CommonPasswords.shipped()
    staff = effective_policy([SCHOOL_STAFF, domain, entra_rules(), google_rules()], ["oakfield"])
    pupils = effective_policy([SCHOOL_PUPILS, domain, entra_rules(), google_rules()], ["oakfield"])
    passwords = [generate(staff, identity, style="random", length=12, common=common) for _ in range(1000)]
    passwords += [generate(pupils, identity, style="memorable", common=common) for _ in range(1000)]
    # The first hundred through the connector (as the executor sets them), the rest as raw admin
    # resets on one connection: the DC's answer is the same, at twice the rate.
    changes = [Change("ad", Action.SET_PASSWORD, "P5001", "ksamba", "test reset", target=key,
                      after={"must_change_password": i % 2 == 0}, password=pw) for i, pw in enumerate(passwords[:100])]
    refused = [(pw, r.detail) for pw, r in zip(passwords, ad.apply(changes), strict=False)
               if r.outcome is not Outcome.APPLIED]
    conn = samba_dc.connection()
    started = time.perf_counter()
    for password in passwords[100:]:
        conn.modify(dn, {"unicodePwd": [(ldap3.MODIFY_REPLACE, [f'"{password}"'.encode("utf-16-le")])]})
        if conn.result["result"] != 0:
            refused.append((password, conn.result["message"]))
    elapsed = time.perf_counter() - started
    conn.unbind()
    assert refused == []
    print(f"\n1,900 raw admin resets of generated passwords: {elapsed:.1f} s ({1900 / elapsed:.0f}/s)")


weak_passwords = st.one_of(
    st.text(string.ascii_lowercase, min_size=1, max_size=14),
    st.text(string.ascii_lowercase + string.digits, min_size=1, max_size=14),
    st.text(string.ascii_uppercase + string.punctuation, min_size=1, max_size=14),
    st.text(string.ascii_letters + string.digits + "!#%*", min_size=1, max_size=8),
)
"""ASCII only: Samba counts £ and € as a category of their own, Windows does not (see below)."""


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(password=weak_passwords)
def test_what_the_checker_refuses_for_length_or_complexity_the_dc_refuses_too(
        samba_dc: DomainController, ad: ADConnector, test_user: tuple[str, str], password: str) -> None:
    _, dn = test_user
    domain = effective_policy([rules_of({"ad": ad})["ad"]])
    nobody = Identity("zz", "Zz")
    broken = {v.rule for v in check(password, domain, nobody)} & set(DOMAIN_RULES)
    result = admin_reset(samba_dc, dn, password)
    if broken:
        assert result["result"] == 19 and "0000052D" in str(result["message"]), (password, broken, result)
    elif all(c.isascii() for c in password):
        assert result["result"] == 0, (password, result)


@pytest.mark.parametrize(("password", "rules"), [
    ("Ab1!xy", ["length"]),
    ("abcdefgh12", ["classes"]),
    ("ABCDEFGH!!", ["classes"]),
])
def test_each_domain_rule_example_is_refused_by_the_dc_and_by_the_connector(
        samba_dc: DomainController, ad: ADConnector, test_user: tuple[str, str], password: str,
        rules: list[str]) -> None:
    key, dn = test_user
    domain = effective_policy([rules_of({"ad": ad})["ad"]])
    assert [v.rule for v in check(password, domain, Identity("zz", "Zz"))] == rules
    result = admin_reset(samba_dc, dn, password)
    assert result["result"] == 19 and "0000052D" in str(result["message"])
    reset = Change("ad", Action.SET_PASSWORD, "P5001", "ksamba", "test", target=key, after={}, password=password)
    [outcome] = list(ad.apply([reset]))
    assert outcome.outcome is Outcome.FAILED and "password policy refused" in outcome.detail
    assert password not in outcome.detail


def test_a_longer_domain_minimum_is_read_and_every_generated_password_meets_it(
        samba_dc: DomainController, ad: ADConnector, test_user: tuple[str, str]) -> None:
    key, _ = test_user
    conn = samba_dc.connection()
    conn.modify(samba_dc.domain_dn, {"minPwdLength": [(ldap3.MODIFY_REPLACE, ["14"])]})
    assert conn.result["result"] == 0, conn.result
    conn.unbind()
    try:
        domain = rules_of({"ad": ad})["ad"]
        assert domain.min_length == 14
        policy = effective_policy([SCHOOL_PUPILS, domain, entra_rules()])
        identity = PasswordIssuer.identity_of(Person("P5001", Kind.PUPIL, "Kit", "Samba"), "ksamba")
        passwords = [generate(policy, identity, style="memorable") for _ in range(50)]
        assert min(len(p) for p in passwords) >= 14
        changes = [Change("ad", Action.SET_PASSWORD, "P5001", "ksamba", "test", target=key, after={}, password=pw)
                   for pw in passwords]
        assert {r.outcome for r in ad.apply(changes)} == {Outcome.APPLIED}
    finally:
        conn = samba_dc.connection()
        conn.modify(samba_dc.domain_dn, {"minPwdLength": [(ldap3.MODIFY_REPLACE, ["7"])]})
        conn.unbind()


def test_samba_counts_pound_and_euro_signs_but_the_checker_follows_windows_and_refuses_them(
        samba_dc: DomainController, ad: ADConnector, test_user: tuple[str, str]) -> None:
    # Windows: "currency symbols such as the Euro or British Pound aren't counted as special
    # characters". Samba (measured here) counts any non-ASCII character as a fifth category.
    _, dn = test_user
    domain = effective_policy([rules_of({"ad": ad})["ad"]])
    assert [v.rule for v in check("abcdefg£€1", domain, Identity("zz", "Zz"))] == ["classes", "characters"]
    assert admin_reset(samba_dc, dn, "abcdefg£€1")["result"] == 0

