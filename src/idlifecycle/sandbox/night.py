"""The sample school's first night against emulators in their own processes, for the kill test and the bench.

The Graph emulator (and, with `google=True`, the Google one) runs as `python -m idlifecycle.sandbox…`
in a process of its own, so its directory outlives a `kill -9` of the tool; the job's connectors
name it as they would name a real tenant (URL, TLS CA, client id; the secret in the environment).
`SchoolNight.sync()` starts the real `idlifecycle sync` in a subprocess. The emulators' write logs
and kill points (`idlifecycle.sandbox.faults`) are reached over their `/_emulator/…` paths.

    night = SchoolNight.start(folder, google=True, faults=FaultSpec(rate=0.2, seed=7))
    night.sync("2026-11-23").wait()
    night.stop()   # the emulators save their directories: night.entra_state(), night.google_state()
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from idlifecycle.sandbox.faults import FaultSpec
from idlifecycle.sandbox.files import write_atomically

SAMPLE = Path(__file__).parent / "sample_school"
STAFF = "staff.example.sch.uk"
PUPILS = "pupils.example.sch.uk"
DOMAINS = {"staff": STAFF, "pupil": PUPILS}
MARKER = "Managed by idlifecycle"
GOOGLE_ADMIN = f"it.admin@{STAFF}"
CLIENT_ID = "idlifecycle-night"
GUARDS = {"max_destructive": 50, "max_destructive_percent": 10, "percent_floor": 5, "max_feed_drop_percent": 10,
          "max_bad_rows_percent": 2, "max_days_between_runs": 60}
"""The demo job's guards (jobs/nightly.toml): the sample school's first night passes them."""


@dataclass
class EmulatorProcess:
    """One emulator in its own process, and its control paths."""

    process: subprocess.Popen[str]
    url: str
    """Where `/_emulator/...` is served (the Graph emulator's is HTTPS with its own certificate)."""
    ca_file: str | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def _call(self, method: str, path: str, body: Mapping[str, Any] | None = None) -> Any:
        import ssl

        context = ssl.create_default_context(cafile=self.ca_file) if self.ca_file else None
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.url.rstrip("/") + path, data=data, method=method,  # noqa: S310
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30, context=context) as answer:  # noqa: S310 - 127.0.0.1
            return json.loads(answer.read())

    def stats(self) -> dict[str, Any]:
        return dict(self._call("GET", "/_emulator/stats"))

    def writes(self) -> list[dict[str, Any]]:
        """The emulator's write log: every write it applied, in order."""
        return list(self._call("GET", "/_emulator/writes")["writes"])

    def arm_kill(self, pid: int, after: int, settle: float = 0.0) -> None:
        """SIGKILL `pid` when the write log holds `after` writes (`settle`: freeze there, kill that much later)."""
        self._call("POST", "/_emulator/kill", {"pid": pid, "after": after, "settle": settle})

    def kill_now(self, pid: int) -> None:
        self._call("POST", "/_emulator/kill", {"pid": pid, "now": True})

    def frozen(self) -> bool:
        """Whether an armed kill point with `settle` was reached."""
        return self._call("POST", "/_emulator/kill", {"peek": True}).get("frozen_at") is not None

    def disarm(self) -> None:
        self._call("POST", "/_emulator/kill", {"pid": None})

    def stop(self) -> None:
        """Stop it; it saves its directory to its state file on the way out."""
        if self.process.poll() is None:
            if self.process.stdin is not None:
                self.process.stdin.close()  # the Graph emulator stops when its stdin closes
            self.process.terminate()  # the Google one on SIGTERM
        self.process.wait(timeout=30)


def start_graph(folder: Path, *, faults: FaultSpec | None = None, seed: Path = SAMPLE / "entra-seed.json",
                secret: str | None = None, write_limit: tuple[int, float] | None = None,
                latency: float = 0.0) -> EmulatorProcess:
    """The Graph emulator on a free port, seeded with the sample school's tenant, one app registered.

    `write_limit`: (writes, seconds) Graph takes before answering 429 (Graph's own: 3,000 per 150 s);
    `latency`: seconds added to every request.
    """
    folder.mkdir(parents=True, exist_ok=True)
    secret = secret or secrets.token_urlsafe(24)
    secret_file = folder / "client_secret"
    secret_file.write_text(secret)
    secret_file.chmod(0o600)
    command = [sys.executable, "-m", "idlifecycle.sandbox.graph", "--seed", str(seed), "--state",
               str(folder / "graph-state.json"), "--tls-dir", str(folder / "tls"), "--app",
               f"{CLIENT_ID}:{secret_file}"]
    if faults is not None:
        command += ["--faults", faults.to_arg()]
    if write_limit is not None:
        command += ["--write-limit", str(write_limit[0]), "--write-window", str(write_limit[1])]
    if latency:
        command += ["--latency-ms", str(latency * 1000)]
    process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line:
        process.wait()
        raise RuntimeError(f"the Graph emulator did not start (exit {process.returncode})")
    ready = json.loads(line)
    return EmulatorProcess(process, ready["url"], ready["certificate"], {**ready, "secret": secret})


DELEGATED_SCOPES = (
    "https://www.googleapis.com/auth/admin.directory.user",
    "https://www.googleapis.com/auth/admin.directory.user.security",
    "https://www.googleapis.com/auth/admin.directory.group",
    "https://www.googleapis.com/auth/admin.directory.orgunit",
)
"""The domain-wide delegation the README asks a school to grant, as its admin would enter it (written out
here, not imported from the connector: the emulators know no connector module)."""


def start_google(folder: Path, *, faults: FaultSpec | None = None, latency: float = 0.0,
                 quota_per_minute: int | None = None) -> EmulatorProcess:
    """The Google emulator on a free port with the sample school's domains, an admin and a trusted key.

    `latency`: seconds added to every request; `quota_per_minute`: calls Google takes a minute (its own: 2,400).
    """
    from idlifecycle.sandbox.google import generate_service_account

    folder.mkdir(parents=True, exist_ok=True)
    key_file = folder / "service_account.json"
    info = generate_service_account(key_file, client_email="idlifecycle@school-night.iam.gserviceaccount.com",
                                    token_uri="http://127.0.0.1:1/token")  # noqa: S106 - a URL; set below
    command = [sys.executable, "-m", "idlifecycle.sandbox.google", "--state", str(folder / "google-state.json"),
               "--domain", STAFF, "--domain", PUPILS, "--admin", GOOGLE_ADMIN, "--service-account", str(key_file),
               "--org-unit", "/School"]
    for scope in DELEGATED_SCOPES:
        command += ["--scope", scope]
    if latency:
        command += ["--latency", str(latency)]
    if quota_per_minute is not None:
        command += ["--quota-per-minute", str(quota_per_minute)]
    if faults is not None:
        command += ["--faults", faults.to_arg()]
    process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line.startswith("listening on "):
        process.kill()
        raise RuntimeError(f"the Google emulator did not start: {line!r}")
    url = line.split("listening on ", 1)[1].strip()
    # The key names the token endpoint (google-auth signs in there); the port is known only now.
    info["token_uri"] = url + "token"
    write_atomically(key_file, json.dumps(info, indent=2).encode())
    return EmulatorProcess(process, url, None, {"key_file": str(key_file)})


@dataclass
class SchoolNight:
    """A job on the sample school's feed whose connectors name emulators in their own processes."""

    folder: Path
    entra: EmulatorProcess
    google: EmulatorProcess | None = None
    mail: Mapping[str, Any] | None = None
    env: dict[str, str] = field(default_factory=dict)
    feeds: dict[str, Path] = field(default_factory=lambda: {"pupil": SAMPLE / "pupils.csv",
                                                            "staff": SAMPLE / "staff.csv"})
    """The job's MIS CSV exports by kind (the sample school's, or a bench's larger one)."""
    google_quota_per_minute: int = 60_000
    """The Google connector's own pace."""
    _outputs: dict[int, Path] = field(default_factory=dict)

    @classmethod
    def start(cls, folder: Path, *, google: bool = False, faults: FaultSpec | None = None,
              mail: Mapping[str, Any] | None = None, env: Mapping[str, str] | None = None,
              timeout_seconds: float = 10, write_limit_per_second: float = 500,
              graph_write_limit: tuple[int, float] | None = None, latency: float = 0.0,
              google_quota: int | None = None, feeds: Mapping[str, Path] | None = None) -> SchoolNight:
        """Both emulators started and the job written; `mail`: a [mail] section (staff passwords by email).

        `write_limit_per_second` is the Entra connector's own pace; `graph_write_limit` the emulator's limit;
        `google_quota` both Google's limit and the connector's pace (calls per minute); `latency` is added
        to every request of either emulator; `feeds` replaces the sample school's exports ({"pupil": path,
        "staff": path}).
        """
        folder.mkdir(parents=True, exist_ok=True)
        entra = start_graph(folder / "entra", faults=faults, write_limit=graph_write_limit, latency=latency)
        try:
            other = start_google(folder / "google", faults=faults, latency=latency,
                                 quota_per_minute=google_quota) if google else None
        except BaseException:
            entra.stop()
            raise
        night = cls(folder, entra, other, mail, dict(env or {}))
        if feeds is not None:
            night.feeds = dict(feeds)
        if google_quota is not None:
            night.google_quota_per_minute = google_quota
        night.write_job(timeout_seconds, write_limit_per_second)
        return night

    def write_job(self, timeout_seconds: float, write_limit_per_second: float = 500) -> None:
        connectors = [self.folder / "entra.toml"]
        info = self.entra.info
        _write_toml(self.folder / "entra.toml", {
            "name": "entra", "type": "entra", "tenant_id": info["tenant_id"], "client_id": CLIENT_ID,
            "authority_host": self.entra.url.split("://", 1)[1], "graph_url": self.entra.url + "/v1.0",
            "ca_file": info["certificate"], "domains": DOMAINS, "group_marker": MARKER, "usage_location": "GB",
            "write_limit_per_second": write_limit_per_second, "timeout_seconds": timeout_seconds,
        })
        self.env["IDLIFECYCLE_ENTRA_CLIENT_SECRET"] = info["secret"]
        if self.google is not None:
            connectors.append(self.folder / "google.toml")
            _write_toml(self.folder / "google.toml", {
                "name": "google", "type": "google", "admin": GOOGLE_ADMIN, "domains": DOMAINS,
                "org_unit_root": "/School", "api_endpoint": self.google.url,
                "quota_per_minute": self.google_quota_per_minute,
                "timeout": timeout_seconds,
            })
            self.env["IDLIFECYCLE_GOOGLE_SERVICE_ACCOUNT"] = self.google.info["key_file"]
        passwords: dict[str, Any] = {"school_name": "Oakfield Church of England Primary School",
                                     "line_managers": {"fallback": "office@oakfield.example.sch.uk"}}
        if self.mail:
            passwords["staff"] = {"delivery": "email"}
        text = _toml_table("job", {"name": "nightly", "state_dir": "state",
                                   "connectors": [str(c) for c in connectors],
                                   "mappings": [str(SAMPLE.parents[2].parent / "mappings" / "school.toml")]})
        for kind, feed in self.feeds.items():
            text += _toml_table("[job.feeds]", {"format": "mis-csv", "path": str(feed), "kind": kind,
                                                "date_order": "dmy"})
        text += _toml_table("guards", GUARDS) + _toml_table("passwords", passwords)
        if self.mail:
            text += _toml_table("mail", self.mail)
        (self.folder / "job.toml").write_text(text, encoding="utf-8")

    def command(self, today: str, *args: str) -> list[str]:
        return [sys.executable, "-m", "idlifecycle", "--config", str(self.folder / "job.toml"), "--today", today,
                *(args or ("sync",))]

    def sync(self, today: str, *args: str) -> subprocess.Popen[str]:
        """`idlifecycle sync` (or `args`) for `today`, started in its own process.

        Its output goes to files (`output(run)`), not pipes: a run nobody reads from while it is
        frozen for a kill must not stall on a full pipe.
        """
        logs = self.folder / "runs"
        logs.mkdir(exist_ok=True)
        number = len(list(logs.glob("*.out")))
        with (logs / f"{number:03d}.out").open("w") as out, (logs / f"{number:03d}.err").open("w") as err:
            run = subprocess.Popen(self.command(today, *args), cwd=self.folder, stdout=out, stderr=err, text=True,
                                   env={**os.environ, **self.env})
        self._outputs[run.pid] = logs / f"{number:03d}"
        return run

    def output(self, run: subprocess.Popen[str]) -> tuple[str, str]:
        """What a run started by `sync` printed: (stdout, stderr)."""
        stem = self._outputs[run.pid]
        return stem.with_suffix(".out").read_text(), stem.with_suffix(".err").read_text()

    def run(self, today: str, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.command(today, *args), cwd=self.folder, capture_output=True, text=True,
                              env={**os.environ, **self.env}, timeout=timeout, check=False)

    def emulators(self) -> dict[str, EmulatorProcess]:
        return {"entra": self.entra, **({"google": self.google} if self.google is not None else {})}

    def stop(self) -> None:
        for emulator in self.emulators().values():
            emulator.stop()

    def entra_state(self) -> dict[str, Any]:
        """The Graph emulator's saved directory (after `stop`)."""
        return dict(json.loads((self.folder / "entra" / "graph-state.json").read_text()))

    def google_state(self) -> dict[str, Any]:
        return dict(json.loads((self.folder / "google" / "google-state.json").read_text())["directory"])


def _toml_value(value: Any) -> str:
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{json.dumps(str(k))} = {_toml_value(v)}" for k, v in value.items()) + " }"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value)


def _toml_table(title: str, values: Mapping[str, Any]) -> str:
    head = f"\n[{title}]\n"
    return head + "".join(f"{k} = {_toml_value(v)}\n" for k, v in values.items())


def _write_toml(path: Path, values: Mapping[str, Any]) -> None:
    path.write_text("".join(f"{k} = {_toml_value(v)}\n" for k, v in values.items()), encoding="utf-8")
