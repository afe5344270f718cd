"""The container image that scripts/image.sh builds with buildah (issue 11).

Builds the image from the binary the test run already built (SPACECAST_TEST_BINARY, default
$CARGO_TARGET_DIR/debug/spacecast: no release build in CI), runs `spacecast serve` from the image's
root filesystem (`buildah run --isolation chroot`), checks /healthz and /readyz, stops it with
SIGTERM (graceful drain, exit 0), then exports the OCI archive and checks its index, manifest,
config and layer. Also checks that the Containerfile declares the same entrypoint, command, user,
port, volume, environment and labels. Then runs the image as the chart's cluster pods run it:
`spacecast migrate` (the hook Job) on a fresh keyspace of the suite's Cassandra, and `serve` on
CQL, NATS and S3 (the suite's Cassandra, nats-server and SeaweedFS), ready on /readyz.

buildah must be installed (scripts/image.sh install; scripts/test.sh does it) and the services up
(scripts/test.sh starts them; alone: scripts/cassandra.sh up, scripts/nats.sh up,
scripts/seaweedfs.sh up): a missing one fails these tests, it never skips them.
"""

import hashlib
import io
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tarfile
import time
import uuid
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
IMAGE_SH = ROOT / "scripts" / "image.sh"
USER_ID = 10001


def binary() -> Path:
    explicit = os.environ.get("SPACECAST_TEST_BINARY")
    if explicit:
        return Path(explicit)
    target = os.environ.get(
        "CARGO_TARGET_DIR", str(Path.home() / ".cache" / "spacecast" / "target")
    )
    return Path(target) / "debug" / "spacecast"


def image_sh(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(IMAGE_SH), *args], cwd=ROOT, text=True, capture_output=True, **kw
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


@pytest.fixture(scope="module")
def built_image() -> str:
    assert shutil.which("buildah"), "buildah is not installed: run scripts/image.sh install"
    exe = binary()
    assert exe.is_file(), f"no spacecast binary at {exe}: build it (cargo build -p spacecast-api --bin spacecast) or set SPACECAST_TEST_BINARY"
    r = image_sh("build", "--binary", str(exe))
    assert r.returncode == 0, f"image build failed:\n{r.stdout}\n{r.stderr}"
    name = image_sh("name").stdout.strip()
    assert re.fullmatch(r"[a-z0-9./-]+:[\w.-]+", name), name
    return name


def descendants(pid: int) -> list[int]:
    out = subprocess.run(
        ["ps", "-o", "pid=", "--ppid", str(pid)], text=True, capture_output=True
    ).stdout.split()
    found = []
    for child in map(int, out):
        found.append(child)
        found.extend(descendants(child))
    return found


class ImageServer:
    """`scripts/image.sh run [--env ...] serve --listen 127.0.0.1:<free port>`."""

    def __init__(self, tmp_path: Path, env: dict[str, str] | None = None):
        self.port = free_port()
        self.log_path = tmp_path / f"serve-{self.port}.log"
        self.log = self.log_path.open("w")
        envargs = [a for k, v in (env or {}).items() for a in ("--env", f"{k}={v}")]
        self.proc = subprocess.Popen(
            [str(IMAGE_SH), "run", *envargs, "serve", "--listen", f"127.0.0.1:{self.port}"],
            cwd=ROOT,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def text(self) -> str:
        return self.log_path.read_text()

    def wait_for(self, path: str, status: int, within: float) -> str:
        """Polls GET path until it answers `status`; fails at the deadline or if the server exits."""
        deadline = time.monotonic() + within
        last = None
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"the image's server exited early:\n{self.text()}"
            try:
                last = http_get(self.url(path))
                if last[0] == status:
                    return last[1]
            except (urllib.error.URLError, ConnectionError, TimeoutError) as e:
                last = e
            time.sleep(0.2)
        pytest.fail(f"{path} did not answer {status} within {within} s (last: {last}):\n{self.text()}")

    def server_pid(self) -> int:
        servers = [
            p
            for p in descendants(self.proc.pid)
            if Path(f"/proc/{p}/comm").read_text().strip() == "spacecast"
        ]
        assert len(servers) == 1, servers
        return servers[0]

    def stop(self) -> None:
        """SIGTERM: the server drains and exits 0."""
        os.kill(self.proc.pid, signal.SIGTERM)
        rc = self.proc.wait(timeout=120)
        text = self.text()
        assert rc == 0, f"exit {rc} after SIGTERM:\n{text}"
        assert "shutdown requested" in text and "spacecast stopped" in text, text

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


def test_serves_from_the_image_root_filesystem_and_drains_on_sigterm(built_image, tmp_path):
    server = ImageServer(tmp_path)
    try:
        body = server.wait_for("/healthz", 200, within=90)
        assert json.loads(body) == {"status": "ok"}
        server.wait_for("/readyz", 200, within=30)

        # The server process: the image's non-root user, chrooted into the image's root
        # filesystem (so only the libraries copied into it are there to load).
        pid = server.server_pid()
        uids = re.search(r"^Uid:\s+(\d+)\s+(\d+)", Path(f"/proc/{pid}/status").read_text(), re.M)
        assert uids and int(uids.group(1)) == USER_ID and int(uids.group(2)) == USER_ID, uids
        root = os.readlink(f"/proc/{pid}/root")
        assert root != "/", "the server runs on the host's root filesystem, not the image's"
        assert sorted(os.listdir(f"/proc/{pid}/root/usr/local/bin")) == ["spacecast"]
        assert not Path(f"/proc/{pid}/root/bin/sh").exists(), "the image has a shell"
        # It wrote its development secret into the image's /data as the non-root user.
        secret = Path(f"/proc/{pid}/root/data/jwt-secret")
        assert secret.is_file() and secret.stat().st_uid == USER_ID

        server.stop()
    finally:
        server.kill()


def services() -> dict[str, str]:
    """The suite's CQL, NATS and S3 servers, as the env of a cluster pod (values of the chart's
    examples/cluster.yaml, pointed at loopback)."""
    cql = os.environ.get("SPACECAST_TEST_CQL_NODES", "127.0.0.1:9042")
    nats = os.environ.get("SPACECAST_TEST_NATS_URL")
    if not nats:
        nats = subprocess.run([str(ROOT / "scripts" / "nats.sh"), "url"], text=True, capture_output=True, check=True).stdout.strip()
    s3 = {k[len("SPACECAST_TEST_S3_"):]: v for k, v in os.environ.items() if k.startswith("SPACECAST_TEST_S3_")}
    if len(s3) < 5:
        r = subprocess.run([str(ROOT / "scripts" / "seaweedfs.sh"), "env"], text=True, capture_output=True)
        assert r.returncode == 0, f"no S3 test server: run scripts/seaweedfs.sh up (or export SPACECAST_TEST_S3_*): {r.stderr}"
        for line in r.stdout.splitlines():
            k, _, v = line.removeprefix("export SPACECAST_TEST_S3_").partition("=")
            s3.setdefault(k, v)
    return {
        "SPACECAST_STORE": "cql",
        "SPACECAST_CQL_NODES": cql,
        "SPACECAST_NATS_URL": nats,
        "SPACECAST_MEDIA_STORE": "s3",
        "SPACECAST_S3_ENDPOINT": s3["ENDPOINT"],
        "SPACECAST_S3_REGION": s3["REGION"],
        "SPACECAST_S3_BUCKET": s3["BUCKET"],
        "SPACECAST_S3_ACCESS_KEY_ID": s3["ACCESS_KEY_ID"],
        "SPACECAST_S3_SECRET_ACCESS_KEY": s3["SECRET_ACCESS_KEY"],
        "SPACECAST_JWT_SECRET": uuid.uuid4().hex + uuid.uuid4().hex,
    }


def drop_keyspace(cql_nodes: str, keyspace: str) -> None:
    host, _, port = cql_nodes.split(",")[0].rpartition(":")
    subprocess.run(
        ["python3", str(ROOT / "scripts" / "cassandra" / "cql.py"), "--host", host, "--port", port, "--quiet",
         "-e", f"DROP KEYSPACE IF EXISTS {keyspace}"],
        check=False,
    )


def test_a_cluster_node_from_the_image_migrates_and_serves_on_cql_nats_and_s3(built_image, tmp_path):
    keyspace = f"ops_image_{uuid.uuid4().hex[:12]}"
    node_id = f"ops-image-{uuid.uuid4().hex[:8]}"
    env = services() | {
        "SPACECAST_CQL_KEYSPACE": keyspace,
        "SPACECAST_S3_PREFIX": keyspace,
        "SPACECAST_NODE_ID": node_id,
    }
    envargs = [a for k, v in env.items() for a in ("--env", f"{k}={v}")]
    server = None
    try:
        # The chart's hook Job: `spacecast migrate` with the pod's environment.
        r = image_sh("run", *envargs, "migrate", timeout=300)
        assert r.returncode == 0, f"migrate from the image failed:\n{r.stdout}\n{r.stderr}"
        assert f"keyspace {keyspace} is at schema version" in r.stdout, r.stdout

        # A cluster pod: ready once its store (CQL) and bus (NATS) answer; S3 checked at start.
        server = ImageServer(tmp_path, env)
        server.wait_for("/readyz", 200, within=120)
        metrics = server.wait_for("/metrics", 200, within=10)
        assert re.search(r'^spacecast_build_info\{[^}]*node_id="' + node_id + '"', metrics, re.M), metrics[:2000]
        server.stop()
    finally:
        if server:
            server.kill()
        drop_keyspace(env["SPACECAST_CQL_NODES"], keyspace)


def read_archive(path: Path) -> dict[str, bytes]:
    with tarfile.open(path) as t:
        return {m.name: t.extractfile(m).read() for m in t.getmembers() if m.isfile()}


def blob(files: dict[str, bytes], digest: str) -> bytes:
    algo, hexd = digest.split(":")
    data = files[f"blobs/{algo}/{hexd}"]
    assert hashlib.sha256(data).hexdigest() == hexd, f"blob {digest} does not match its digest"
    return data


def containerfile() -> dict:
    """The runtime stage's instructions of the Containerfile, as a dict."""
    text = (ROOT / "Containerfile").read_text().replace("\\\n", " ")
    stages = re.split(r"^FROM ", text, flags=re.M)
    final = stages[-1]
    out: dict = {"env": {}, "labels": {}}
    for line in final.splitlines():
        line = line.strip()
        if line.startswith("ENTRYPOINT "):
            out["entrypoint"] = json.loads(line.split(" ", 1)[1])
        elif line.startswith("CMD "):
            out["cmd"] = json.loads(line.split(" ", 1)[1])
        elif line.startswith("USER "):
            out["user"] = line.split()[1]
        elif line.startswith("EXPOSE "):
            out["ports"] = set(line.split()[1:])
        elif line.startswith("VOLUME "):
            out["volumes"] = set(json.loads(line.split(" ", 1)[1]))
        elif line.startswith("WORKDIR "):
            out["workdir"] = line.split()[1]
        elif line.startswith("ENV "):
            out["env"].update(dict(re.findall(r"(\w+)=(\S+)", line)))
        elif line.startswith("LABEL "):
            out["labels"].update(dict(re.findall(r'([\w.]+)="([^"]*)"', line)))
    return out


def test_oci_archive_index_manifest_config_and_layer(built_image, tmp_path):
    archive = tmp_path / "spacecast.oci.tar"
    r = image_sh("export", str(archive))
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == str(archive)
    files = read_archive(archive)
    assert json.loads(files["oci-layout"]) == {"imageLayoutVersion": "1.0.0"}
    index = json.loads(files["index.json"])
    assert index["schemaVersion"] == 2
    [desc] = index["manifests"]
    assert desc["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    assert desc["annotations"]["org.opencontainers.image.ref.name"] == built_image
    manifest = json.loads(blob(files, desc["digest"]))
    assert manifest["config"]["mediaType"] == "application/vnd.oci.image.config.v1+json"
    config = json.loads(blob(files, manifest["config"]["digest"]))
    assert config["os"] == "linux"
    c = config["config"]
    assert c["Entrypoint"] == ["/usr/local/bin/spacecast"]
    assert c["Cmd"] == ["serve"]
    user = c["User"]
    assert user == f"{USER_ID}:{USER_ID}" and not user.startswith("0"), user
    assert set(c["ExposedPorts"]) == {"8080/tcp"}
    assert set(c["Volumes"]) == {"/data"}
    env = dict(e.split("=", 1) for e in c["Env"])
    assert env["SPACECAST_LISTEN"] == "0.0.0.0:8080"
    assert env["SPACECAST_DATA_DIR"] == "/data"
    labels = c["Labels"]
    version = built_image.rsplit(":", 1)[1]
    assert labels["org.opencontainers.image.title"] == "spacecast"
    assert labels["org.opencontainers.image.version"] == version
    assert labels["org.opencontainers.image.licenses"] == "Apache-2.0"
    assert re.fullmatch(r"[0-9a-f]{40}|unknown", labels["org.opencontainers.image.revision"])

    # The same image as the Containerfile's runtime stage.
    cf = containerfile()
    assert cf["entrypoint"] == c["Entrypoint"]
    assert cf["cmd"] == c["Cmd"]
    assert cf["user"] == c["User"]
    assert cf["ports"] == set(c["ExposedPorts"])
    assert cf["volumes"] == set(c["Volumes"])
    assert cf["workdir"] == c["WorkingDir"]
    assert all(env.get(k) == v for k, v in cf["env"].items()), (cf["env"], env)
    # buildah adds io.buildah.version of its own.
    ours = {k for k in labels if not k.startswith("io.buildah.")}
    assert set(cf["labels"]) == ours, (cf["labels"], labels)
    assert cf["labels"]["org.opencontainers.image.version"] == "${VERSION}"
    arg_version = re.search(r"^ARG VERSION=(\S+)", (ROOT / "Containerfile").read_text(), re.M)
    assert arg_version and arg_version.group(1) == version

    # One layer: the binary, the libraries ldd named and the loader, the user, CA roots, /data.
    [layer] = manifest["layers"]
    data = blob(files, layer["digest"])
    with tarfile.open(fileobj=io.BytesIO(data)) as t:
        members = {m.name.lstrip("./").rstrip("/"): m for m in t.getmembers()}
        passwd = t.extractfile(members["etc/passwd"]).read().decode()
    exe = members["usr/local/bin/spacecast"]
    assert exe.isfile() and exe.mode & 0o111 and exe.uid == 0
    assert "lib64/ld-linux-x86-64.so.2" in members
    assert any(n.endswith("/libc.so.6") for n in members), sorted(members)
    assert members["etc/ssl/certs/ca-certificates.crt"].size > 0
    assert members["data"].isdir() and members["data"].uid == USER_ID
    assert f"spacecast:x:{USER_ID}:{USER_ID}:" in passwd
    assert not any(n in members for n in ("bin/sh", "usr/bin/sh", "bin/bash")), "a shell in the image"
    # The binary is stripped: far smaller than the debug binary it came from.
    assert exe.size < binary().stat().st_size
