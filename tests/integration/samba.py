"""A throw-away Samba AD domain controller for tests and benchmarks (recipe: FACTS.md section 1).

`provision_template` provisions a domain once into a stopped folder; `DomainController.copy_of`
clones it with `cp -a` (0.05 s) and `start` runs it on its own 127.x.y.z address, so several
test modules (or several people's test runs) never share a directory. Samba exits when its stdin
closes, so a killed test run leaves no server behind; `--maximum-runtime` is a second backstop.
Each copy gets a certificate naming its address, so tests check TLS with `ca_file` as a school does.

Pytest fixtures (import them into a test module:
`from tests.integration.samba import samba_dc, samba_template`):
- `samba_template` (session): the provisioned, stopped domain; skips with the reason when the
  suite is not run as root or samba is not installed.
- `samba_dc` (module): a running copy of it, with an ldap3 connection factory and
  `connector_context(...)` building the ConnectorContext an ADConnector needs.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ldap3
import pytest

from idlifecycle.connectors.base import ConnectorContext
from idlifecycle.passwords.generator import throwaway
from idlifecycle.store import Store

REALM = "TEST.EXAMPLE.COM"
DOMAIN = "TEST"
DOMAIN_DN = "DC=test,DC=example,DC=com"
ADMIN_PASSWORD = "Adm1n-Test-Passw0rd!"  # a throw-away test domain's password
MANAGED_DN = f"OU=School,{DOMAIN_DN}"
"""The managed tree the tests hand to ADConnector (created at provisioning)."""

SAMBA = shutil.which("samba") or "/usr/sbin/samba"
SAMBA_TOOL = shutil.which("samba-tool") or "/usr/bin/samba-tool"
TEMPLATE_ADDRESS = "127.0.0.2"
MAXIMUM_RUNTIME = 3600


def unavailable_reason() -> str | None:
    """Why a Samba DC cannot run here, or None when it can."""
    if os.geteuid() != 0:
        return "the Samba AD DC tests need root (LDAP ports 389/636 are fixed); CI runs them as root"
    if not (os.path.exists(SAMBA) and os.path.exists(SAMBA_TOOL)):
        return "samba is not installed: apt-get install samba-ad-dc samba-ad-provision"
    return None


def _smb_options(root: Path, address: str) -> dict[str, str]:
    return {
        "interfaces": f"{address}/8",  # a bare address makes LDAP listen nowhere (FACTS.md)
        "bind interfaces only": "yes",
        "pid directory": f"{root}/run",
        "ncalrpc dir": f"{root}/run/ncalrpc",
        "winbindd socket directory": f"{root}/run/winbindd",
        "ntp signd socket directory": f"{root}/run/ntp_signd",
        "log file": f"{root}/log/samba.log",
        "server services": "-s3fs -nbt -wrepl -kdc -drepl -winbindd -ntp_signd -kcc -dnsupdate -dns",
    }


def provision_template(root: Path) -> Path:
    """Provision a stopped test domain into `root` (about 5 s) with a test-friendly policy."""
    root.mkdir(parents=True, exist_ok=True)
    for sub in ("run", "log"):
        (root / sub).mkdir(exist_ok=True)
    command = [
        SAMBA_TOOL, "domain", "provision", "-s", "/dev/null", f"--targetdir={root}",
        f"--realm={REALM}", f"--domain={DOMAIN}", "--host-name=dc1", f"--adminpass={ADMIN_PASSWORD}",
        "--server-role=dc", "--dns-backend=NONE",
    ]
    for key, value in _smb_options(root, TEMPLATE_ADDRESS).items():
        command.append(f"--option={key} = {value}")
    _run(command)
    _run([SAMBA_TOOL, "domain", "passwordsettings", "set", "-H", f"{root}/private/sam.ldb",
          "--min-pwd-age=0", "--history-length=3"])
    # The managed tree exists before any test runs; the connector creates OUs below it.
    _run([SAMBA_TOOL, "ou", "create", "-H", f"{root}/private/sam.ldb", MANAGED_DN])
    return root


def _make_tls(tls: Path, address: str) -> None:
    """A certificate naming the DC's address, made before the first start (samba would spend 1-3 s
    on its own), so tests can validate it with `ca_file` as a school would."""
    tls.mkdir(parents=True, exist_ok=True)
    _run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
          "-days", "30", "-subj", "/CN=dc1.test.example.com", "-addext", f"subjectAltName=IP:{address}",
          "-keyout", str(tls / "key.pem"), "-out", str(tls / "cert.pem")])
    shutil.copy(tls / "cert.pem", tls / "ca.pem")
    (tls / "key.pem").chmod(0o600)


def _run(command: list[str]) -> None:
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command[:3])} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")


def _free_address() -> str:
    """A 127.x.y.z address nobody listens on yet (other runs may have DCs of their own)."""
    rng = random.SystemRandom()
    for _ in range(50):
        address = f"127.{rng.randint(1, 254)}.{rng.randint(1, 254)}.{rng.randint(2, 254)}"
        with socket.socket() as probe:
            try:
                probe.bind((address, 636))
            except OSError:
                continue
            return address
    raise RuntimeError("no free 127.x.y.z address for a Samba DC")


@dataclass
class DomainController:
    """One running (or stopped) copy of the test domain."""

    root: Path
    address: str
    process: subprocess.Popen[bytes] | None = None

    domain_dn: str = DOMAIN_DN
    managed_dn: str = MANAGED_DN
    admin_dn: str = f"CN=Administrator,CN=Users,{DOMAIN_DN}"
    admin_login: str = f"Administrator@{REALM.lower()}"
    admin_password: str = ADMIN_PASSWORD
    realm: str = REALM

    @classmethod
    def copy_of(cls, template: Path, root: Path, address: str | None = None) -> DomainController:
        """Clone a stopped domain into `root` and point its configuration at a fresh address."""
        address = address or _free_address()
        subprocess.run(["cp", "-a", str(template), str(root)], check=True)
        conf = root / "etc" / "smb.conf"
        text = conf.read_text().replace(str(template), str(root))
        text = text.replace(f"{TEMPLATE_ADDRESS}/8", f"{address}/8")
        conf.write_text(text)
        _make_tls(root / "private" / "tls", address)
        return cls(root=root, address=address)

    @property
    def url(self) -> str:
        return f"ldaps://{self.address}"

    def start(self, timeout: float = 30.0) -> None:
        self.process = subprocess.Popen(
            [SAMBA, "-s", str(self.root / "etc" / "smb.conf"), "-F", "--no-process-group", "-M", "single",
             "-i", f"--maximum-runtime={MAXIMUM_RUNTIME}"],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                log = self.root / "log" / "samba.log"
                tail = log.read_text()[-2000:] if log.exists() else ""
                raise RuntimeError(f"samba exited with {self.process.returncode}:\n{tail}")
            try:
                self.connection().unbind()
                return
            except ldap3.core.exceptions.LDAPException:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"samba on {self.address} did not answer LDAPS within {timeout} s")

    def stop(self) -> None:
        if self.process is None:
            return
        process, self.process = self.process, None
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stdin is not None:
            process.stdin.close()

    def connection(self, user: str | None = None, password: str | None = None) -> ldap3.Connection:
        """A bound LDAPS connection (as Administrator unless told otherwise); raises on failure."""
        server = ldap3.Server(self.url, use_ssl=True, tls=ldap3.Tls(validate=ssl.CERT_NONE), connect_timeout=5,
                               get_info=ldap3.NONE)
        return ldap3.Connection(
            server, user=user or self.admin_login, password=password or self.admin_password,
            auto_bind=True, raise_exceptions=False, receive_timeout=30,
        )

    def bind_result(self, login: str, password: str) -> dict[str, Any]:
        """What the DC answers a user's own sign-in with (result code, and `data 773` style markers)."""
        server = ldap3.Server(self.url, use_ssl=True, tls=ldap3.Tls(validate=ssl.CERT_NONE), get_info=ldap3.NONE)
        conn = ldap3.Connection(server, user=login, password=password)
        conn.bind()
        result = dict(conn.result)
        conn.unbind()
        return result

    @property
    def ca_file(self) -> Path:
        """The DC's self-signed certificate, which names its address: a CA file for `ca_file`."""
        return self.root / "private" / "tls" / "ca.pem"

    def connector_options(self, **overrides: Any) -> dict[str, Any]:
        """ADConnector options for this DC, certificate validation on (against `ca_file`)."""
        options: dict[str, Any] = {
            "servers": [self.url],
            "ca_file": str(self.ca_file),
            "bind_dn": self.admin_login,
            "base_dn": self.managed_dn,
            "groups_container": "Groups",
            "upn_suffix": REALM.lower(),
        }
        options.update(overrides)
        return options

    def connector_context(self, store: Store, name: str = "ad", secrets: Mapping[str, str] | None = None,
                          **overrides: Any) -> ConnectorContext:
        """A ConnectorContext for ADConnector against this DC; the bind password in `<name>_bind_password`."""
        return ConnectorContext(
            name=name, type="ad", options=self.connector_options(**overrides), source=f"{name}.toml",
            cursors=store, state_dir=self.root / "state",
            secrets=dict(secrets) if secrets is not None else {f"{name}_bind_password": self.admin_password},
            password_generator=throwaway,
        )


@contextlib.contextmanager
def running_copy(template: Path, root: Path) -> Iterator[DomainController]:
    dc = DomainController.copy_of(template, root)
    dc.start()
    try:
        yield dc
    finally:
        dc.stop()


@pytest.fixture(scope="session")
def samba_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    reason = unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    return provision_template(tmp_path_factory.mktemp("samba") / "template")


@pytest.fixture(scope="module")
def samba_dc(samba_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DomainController]:
    """A running domain controller of its own for one test module."""
    with running_copy(samba_template, tmp_path_factory.mktemp("dc") / "dc") as dc:
        yield dc
