"""A real Orthanc PACS on loopback for the DICOMweb tests: started, filled, stopped, restarted.

Debian's `orthanc` and `orthanc-dicomweb` packages provide the server and its DICOMweb plugin;
the tests that need them skip, saying why, where they are not installed.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

ORTHANC = shutil.which("Orthanc") or "/usr/sbin/Orthanc"
# Where Debian's orthanc-dicomweb package puts its plugin.
DICOMWEB_PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")
USER, PASSWORD = "screen", "not-the-real-one-7f3a"


def missing() -> str | None:
    """Why Orthanc cannot run here, or None."""
    if not Path(ORTHANC).exists():
        return "Orthanc is not installed (apt-get install orthanc orthanc-dicomweb)"
    if not DICOMWEB_PLUGIN.exists():
        return f"Orthanc's DICOMweb plugin is not installed ({DICOMWEB_PLUGIN}; " \
               "apt-get install orthanc-dicomweb)"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Orthanc:
    """One Orthanc process with its own configuration, storage and ports, all temporary."""

    def __init__(self, folder: Path, *, lua: str = "", aet: str = "SCREENPACS") -> None:
        self.folder = folder
        self.storage = folder / "storage"
        self.http_port, self.dicom_port, self.aet = free_port(), free_port(), aet
        self.config = folder / "orthanc.json"
        settings = {
            "Name": "screen-test",
            "StorageDirectory": str(self.storage),
            "IndexDirectory": str(self.storage),
            "StorageCompression": False,
            "Plugins": [str(DICOMWEB_PLUGIN)],
            "HttpPort": self.http_port,
            "DicomPort": self.dicom_port,
            "DicomAet": aet,
            "DicomCheckCalledAet": False,
            "DicomAlwaysAllowStore": True,
            "RemoteAccessAllowed": False,  # loopback only
            "AuthenticationEnabled": True,
            "RegisteredUsers": {USER: PASSWORD},
            "HttpTimeout": 30,
            "SaveJobs": False,
            "StableAge": 1,
            "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "EnableWado": False,
                         "Host": f"127.0.0.1:{self.http_port}", "Ssl": False,
                         "StudiesMetadata": "Full", "SeriesMetadata": "Full"},
        }
        if lua:
            script = folder / "filter.lua"
            script.write_text(lua)
            settings["LuaScripts"] = [str(script)]
        self.config.write_text(json.dumps(settings, indent=1))
        self.log = folder / "orthanc.log"
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def dicomweb(self) -> str:
        return f"dicomweb+{self.url}/dicom-web"

    @property
    def auth(self) -> tuple[str, str]:
        return USER, PASSWORD

    def start(self, timeout: float = 30.0) -> None:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen([ORTHANC, str(self.config)], stdout=log,
                                            stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"Orthanc exited ({self.process.returncode}): "
                                   f"{self.log.read_text()[-2000:]}")
            try:
                if requests.get(f"{self.url}/system", auth=self.auth, timeout=2).ok:
                    return
            except requests.ConnectionError:
                pass
            time.sleep(0.2)
        raise TimeoutError(f"Orthanc did not answer in {timeout} s: {self.log.read_text()[-2000:]}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def upload(self, files: list[Path]) -> int:
        """POST each file to Orthanc's own REST API; how many it took as DICOM."""
        from concurrent.futures import ThreadPoolExecutor

        def post(path: Path) -> bool:
            answer = requests.post(f"{self.url}/instances", data=path.read_bytes(),
                                   auth=self.auth, timeout=30)
            return answer.ok

        with ThreadPoolExecutor(4) as pool:
            return sum(pool.map(post, files))

    def get(self, path: str) -> object:
        answer = requests.get(f"{self.url}{path}", auth=self.auth, timeout=30)
        answer.raise_for_status()
        return answer.json()


# A Lua filter that fails, with HTTP 500, every retrieval (not the metadata) of the series
# whose UID is written in fail.txt beside the configuration: a real server error, on demand.
FAIL_ONE_SERIES = """
function IncomingHttpRequestFilter(method, uri, ip, username, httpHeaders)
  local f = io.open("{fail_file}", "r")
  if f ~= nil then
    local uid = f:read("*l")
    f:close()
    if uid ~= nil and uid ~= "" and string.find(uri, uid, 1, true)
        and not string.find(uri, "metadata", 1, true) then
      error("this series fails on purpose, for the test")
    end
  end
  return true
end
"""


@dataclass(frozen=True)
class Pacs:
    """The running Orthanc, the archive it holds, and the series it refuses to send."""

    orthanc: Orthanc
    archive: Path  # the generated archive's folder (archive/, truth.csv, manifest.csv)
    password_file: Path
    failing_series: str

    @property
    def auth(self) -> str:
        return f"basic:{USER}:{self.password_file}"

    def connection(self, **kwargs):
        from screen.dicomweb import PacsAddress, parse_auth
        from screen.dicomweb.connection import Connection

        return Connection(PacsAddress.parse(self.orthanc.dicomweb), parse_auth(self.auth),
                          **kwargs)

    def source(self, **kwargs):
        from screen.dicomweb import PacsSource

        return PacsSource(self.connection(), **kwargs)


def dicom_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


@pytest.fixture(scope="session")
def pacs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pacs]:
    """One Orthanc for the session, holding a small generated archive (2 cases, 64x64)."""
    reason = missing()
    if reason:
        pytest.skip(reason)
    from screen.synth.archive import write_archive

    folder = tmp_path_factory.mktemp("orthanc")
    archive = folder / "synth"
    write_archive(archive, 2, seed=3, matrix=64)
    fail_file = folder / "fail.txt"
    server = Orthanc(folder, lua=FAIL_ONE_SERIES.replace("{fail_file}", str(fail_file)))
    server.start()
    try:
        server.upload(dicom_files(archive / "archive"))
        password_file = folder / "password"
        password_file.write_text(PASSWORD + "\n")
        failing = _an_eligible_series(archive)
        fail_file.write_text(failing + "\n")
        yield Pacs(server, archive, password_file, failing)
    finally:
        server.stop()


def _an_eligible_series(archive: Path) -> str:
    """The UID of one abdominal CT series that the rules keep on its tags alone."""
    from screen.index import index

    result = index([archive / "archive"], workers=1)
    return sorted(e.series.first.series_instance_uid for e in result.eligible
                  if e.series.first.series_instance_uid and not e.confirm)[0]


@pytest.fixture(scope="session")
def cluster() -> Iterator[str]:
    """One Dask cluster on loopback for every sweep of these tests (each scan would otherwise
    start its own); its scheduler's address, for ScanOptions(scheduler=...)."""
    from distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None, memory_limit=0) as local:
        yield local.scheduler_address
