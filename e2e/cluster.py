"""A real single-node Kubernetes cluster on this machine, built from upstream components.

    e2e/cluster up | down | status | kubeconfig | env | load-image FILE.tar... | build
                | kafka-image [--load] | smoke

Everything is built once into ``$JUP2KUB_CACHE/k8s-<version>/`` (bin/, images/); the running
cluster's state (certificates, etcd data, containerd root, kubelet root, logs, pids) lives in
``.../state/`` and ``down`` removes it. Control-plane components listen on 127.0.0.1 or on the
node address, a /32 on a port-less bridge this harness creates; pods sit on a private bridge with
no NAT and no route out (see README.md in this directory).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import shutil
import signal
import string
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from e2e import build, images, versions

HERE = Path(__file__).resolve().parent
MANIFESTS = HERE / "manifests"

# --- layout ------------------------------------------------------------------------------------

CACHE_ROOT = Path(os.environ.get("JUP2KUB_CACHE", Path.home() / ".cache" / "jup2kub"))
HOME = CACHE_ROOT / f"k8s-{versions.KUBERNETES}"
BIN = HOME / "bin"
IMAGES = HOME / "images"
STATE = HOME / "state"
PKI = STATE / "pki"
LOGS = STATE / "logs"
PIDS = STATE / "pids"
CTRD_SOCK = STATE / "containerd" / "containerd.sock"
KUBECONFIG = STATE / "admin.kubeconfig"

# --- network (private addresses on interfaces this harness creates) ----------------------------

NODE_NAME = "j2k-node"
#: interface holding the node address: a port-less bridge (this kernel has no dummy driver);
#: its address is local, so it is reachable from the host and from pods, never from outside
NODE_DEV = "j2k0"
NODE_IP = "10.233.255.1"
BRIDGE = "j2kbr0"
POD_CIDR = "10.233.0.0/24"
SERVICE_CIDR = "10.233.128.0/24"
API_SERVICE_IP = "10.233.128.1"
DNS_IP = "10.233.128.10"
CLUSTER_DOMAIN = "cluster.local"
API_PORT = 6443
ETCD_CLIENT = "http://127.0.0.1:23790"
ETCD_PEER = "http://127.0.0.1:23800"
FORWARD_CHAIN = "J2K-FORWARD"

#: sysctls this harness or the kubelet change; saved before `up`, restored by `down`
SYSCTLS = (
    "net/bridge/bridge-nf-call-iptables",
    "vm/overcommit_memory",
    "vm/panic_on_oom",
    "kernel/panic",
    "kernel/panic_on_oops",
    "kernel/keys/root_maxkeys",
    "kernel/keys/root_maxbytes",
)

#: start order; `down` stops in reverse
COMPONENTS = (
    "etcd",
    "containerd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubelet",
    "kube-proxy",
)


def log(msg: str) -> None:
    build.log(msg)


def run(
    args: Sequence[str],
    check: bool = True,
    capture: bool = False,
    timeout: float | None = 300,
    env: dict[str, str] | None = None,
    input_text: str | None = None,
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(args),
        check=check,
        text=True,
        timeout=timeout,
        input=input_text,
        stdout=subprocess.PIPE if capture else None,
        stderr=subprocess.PIPE if capture else None,
        env=env,
    )


def kubectl(
    *args: str,
    check: bool = True,
    capture: bool = True,
    input_text: str | None = None,
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    return run(
        [str(BIN / "kubectl"), "--kubeconfig", str(KUBECONFIG), *args],
        check=check,
        capture=capture,
        input_text=input_text,
        timeout=timeout,
    )


def ctr(*args: str, check: bool = True, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    return run(
        ["ctr", "--address", str(CTRD_SOCK), "--namespace", "k8s.io", *args],
        check=check,
        capture=True,
        timeout=timeout,
    )


def wait_for(what: str, probe: Callable[[], bool], timeout: float, interval: float = 1.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if probe():
                return
        except (OSError, subprocess.SubprocessError):
            pass
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out after {timeout:.0f} s waiting for {what} (logs: {LOGS})")
        time.sleep(interval)


# --- processes: started detached, pid + start time recorded, only those are ever stopped -------


def _proc_start(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def _pid_of(name: str) -> int | None:
    f = PIDS / f"{name}.pid"
    try:
        pid_s, start = f.read_text().split()
    except (OSError, ValueError):
        return None
    pid = int(pid_s)
    return pid if _proc_start(pid) == start else None


def _write_config(path: Path, text: str) -> None:
    """Write a daemon's configuration only when it changes: kube-proxy exits when its
    configuration file is written at all ("content ... was updated"), and `cluster up` on a
    running cluster rewrote every file, so kube-proxy died and new Services stayed unreachable
    (seen as test_dns_and_clusterip_service failing after a second `cluster up`)."""
    if path.is_file() and path.read_text() == text:
        return
    path.write_text(text)


def start(name: str, args: Sequence[str], env: dict[str, str] | None = None) -> None:
    if _pid_of(name):
        return
    LOGS.mkdir(parents=True, exist_ok=True)
    PIDS.mkdir(parents=True, exist_ok=True)
    full_env = dict(os.environ)
    full_env["PATH"] = f"{BIN}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    full_env.update(env or {})
    with (LOGS / f"{name}.log").open("ab") as out:
        proc = subprocess.Popen(
            list(args),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=full_env,
            cwd=STATE,
        )
    start_time = None
    for _ in range(50):
        start_time = _proc_start(proc.pid)
        if start_time:
            break
        time.sleep(0.01)
    (PIDS / f"{name}.pid").write_text(f"{proc.pid} {start_time}\n")
    time.sleep(0.3)
    if proc.poll() is not None:
        tail = (LOGS / f"{name}.log").read_text(errors="replace")[-3000:]
        raise SystemExit(f"{name} exited at once ({proc.returncode}):\n{tail}")


def stop(name: str, grace: float = 20.0) -> None:
    pid = _pid_of(name)
    if pid is None:
        (PIDS / f"{name}.pid").unlink(missing_ok=True)
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while _pid_of(name) and time.monotonic() < deadline:
        time.sleep(0.2)
    if _pid_of(name):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        time.sleep(0.5)
    (PIDS / f"{name}.pid").unlink(missing_ok=True)


# --- certificates (openssl) --------------------------------------------------------------------


@dataclass(frozen=True)
class Cert:
    name: str
    cn: str
    org: str = ""
    sans: tuple[str, ...] = ()
    server: bool = False


def _openssl(*args: str) -> None:
    run(["openssl", *args], capture=True)


def make_pki() -> None:
    if (PKI / ".complete").is_file():
        return
    PKI.mkdir(parents=True, exist_ok=True)
    os.chmod(PKI, 0o700)
    ca_key, ca_crt = PKI / "ca.key", PKI / "ca.crt"
    _openssl("genrsa", "-out", str(ca_key), "2048")
    _openssl(
        "req",
        "-x509",
        "-new",
        "-key",
        str(ca_key),
        "-sha256",
        "-days",
        "3650",
        "-subj",
        "/CN=j2k-e2e-ca",
        "-out",
        str(ca_crt),
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign,digitalSignature",
    )
    api_sans = (
        "DNS:kubernetes",
        "DNS:kubernetes.default",
        "DNS:kubernetes.default.svc",
        f"DNS:kubernetes.default.svc.{CLUSTER_DOMAIN}",
        "DNS:localhost",
        "IP:127.0.0.1",
        f"IP:{NODE_IP}",
        f"IP:{API_SERVICE_IP}",
    )
    certs = (
        Cert("apiserver", "kube-apiserver", sans=api_sans, server=True),
        Cert("admin", "j2k-admin", org="system:masters"),
        Cert("apiserver-kubelet-client", "kube-apiserver-kubelet-client", org="system:masters"),
        Cert("controller-manager", "system:kube-controller-manager"),
        Cert("scheduler", "system:kube-scheduler"),
        Cert("kubelet-client", f"system:node:{NODE_NAME}", org="system:nodes"),
        Cert("kubelet", NODE_NAME, sans=(f"DNS:{NODE_NAME}", f"IP:{NODE_IP}"), server=True),
        Cert("kube-proxy", "system:kube-proxy"),
    )
    for c in certs:
        key, csr, crt = PKI / f"{c.name}.key", PKI / f"{c.name}.csr", PKI / f"{c.name}.crt"
        subj = f"/CN={c.cn}" + (f"/O={c.org}" if c.org else "")
        _openssl("genrsa", "-out", str(key), "2048")
        _openssl("req", "-new", "-key", str(key), "-subj", subj, "-out", str(csr))
        ext = PKI / f"{c.name}.ext"
        lines = [
            "basicConstraints=critical,CA:FALSE",
            "keyUsage=critical,digitalSignature,keyEncipherment",
            "extendedKeyUsage=" + ("serverAuth" if c.server else "clientAuth"),
        ]
        if c.sans:
            lines.append("subjectAltName=" + ",".join(c.sans))
        ext.write_text("\n".join(lines) + "\n")
        _openssl(
            "x509",
            "-req",
            "-in",
            str(csr),
            "-CA",
            str(ca_crt),
            "-CAkey",
            str(ca_key),
            "-CAcreateserial",
            "-days",
            "3650",
            "-sha256",
            "-extfile",
            str(ext),
            "-out",
            str(crt),
        )
    _openssl("genrsa", "-out", str(PKI / "sa.key"), "2048")
    _openssl("rsa", "-in", str(PKI / "sa.key"), "-pubout", "-out", str(PKI / "sa.pub"))
    (PKI / ".complete").touch()


def write_kubeconfig(path: Path, cert: str) -> None:
    def b64(p: Path) -> str:
        return base64.b64encode(p.read_bytes()).decode()

    cfg = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "j2k-e2e",
                "cluster": {
                    "server": f"https://{NODE_IP}:{API_PORT}",
                    "certificate-authority-data": b64(PKI / "ca.crt"),
                },
            }
        ],
        "users": [
            {
                "name": cert,
                "user": {
                    "client-certificate-data": b64(PKI / f"{cert}.crt"),
                    "client-key-data": b64(PKI / f"{cert}.key"),
                },
            }
        ],
        "contexts": [
            {
                "name": "j2k-e2e",
                "context": {"cluster": "j2k-e2e", "user": cert, "namespace": "default"},
            }
        ],
        "current-context": "j2k-e2e",
    }
    _write_config(path, json.dumps(cfg, indent=2))
    path.chmod(0o600)


# --- host setup: node address, bridge netfilter, forward guard, sysctls ------------------------


def _sysctl_path(key: str) -> Path:
    return Path("/proc/sys") / key


def save_sysctls() -> None:
    saved = STATE / "sysctl.json"
    if saved.is_file():
        return
    values = {}
    for key in SYSCTLS:
        with contextlib.suppress(OSError):
            values[key] = _sysctl_path(key).read_text().strip()
    saved.write_text(json.dumps(values, indent=2))


def restore_sysctls() -> None:
    saved = STATE / "sysctl.json"
    if not saved.is_file():
        return
    for key, value in json.loads(saved.read_text()).items():
        try:
            _sysctl_path(key).write_text(value + "\n")
        except OSError as e:
            log(f"could not restore {key}={value}: {e}")


def _iptables(*args: str, check: bool = False) -> bool:
    return run(["iptables", "-w", "5", *args], check=check, capture=True).returncode == 0


def setup_host() -> None:
    save_sysctls()
    if run(["ip", "link", "show", NODE_DEV], check=False, capture=True).returncode != 0:
        run(["ip", "link", "add", NODE_DEV, "type", "bridge"])
    run(["ip", "addr", "replace", f"{NODE_IP}/32", "dev", NODE_DEV])
    run(["ip", "link", "set", NODE_DEV, "up"])
    # Services are implemented by iptables DNAT, which bridged pod-to-pod traffic only
    # traverses when bridge netfilter is on.
    _sysctl_path("net/bridge/bridge-nf-call-iptables").write_text("1\n")
    # Forward guard: pods may talk to each other (even if another tool set the FORWARD
    # policy to DROP) and never to anything beyond this machine, even with ip_forward on.
    _iptables("-N", FORWARD_CHAIN)
    _iptables("-F", FORWARD_CHAIN)
    _iptables("-A", FORWARD_CHAIN, "-s", POD_CIDR, "-d", POD_CIDR, "-j", "ACCEPT")
    _iptables("-A", FORWARD_CHAIN, "-s", POD_CIDR, "-j", "DROP")
    _iptables("-A", FORWARD_CHAIN, "-d", POD_CIDR, "-j", "DROP")
    if not _iptables("-C", "FORWARD", "-j", FORWARD_CHAIN):
        _iptables("-I", "FORWARD", "1", "-j", FORWARD_CHAIN)


def teardown_host() -> None:
    for dev in (BRIDGE, NODE_DEV):
        run(["ip", "link", "del", dev], check=False, capture=True)
    while _iptables("-D", "FORWARD", "-j", FORWARD_CHAIN):
        pass
    _iptables("-F", FORWARD_CHAIN)
    _iptables("-X", FORWARD_CHAIN)
    # what kube-proxy installed
    if (BIN / "kube-proxy").is_file():
        run([str(BIN / "kube-proxy"), "--cleanup"], check=False, capture=True)
    # what the kubelet installed (KUBE-FIREWALL, canaries, hint chain)
    for table, chain, parents in (
        ("filter", "KUBE-FIREWALL", ("INPUT", "OUTPUT")),
        ("filter", "KUBE-KUBELET-CANARY", ()),
        ("nat", "KUBE-KUBELET-CANARY", ()),
        ("mangle", "KUBE-KUBELET-CANARY", ()),
        ("mangle", "KUBE-IPTABLES-HINT", ()),
    ):
        for parent in parents:
            while _iptables("-t", table, "-D", parent, "-j", chain):
                pass
        _iptables("-t", table, "-F", chain)
        _iptables("-t", table, "-X", chain)
    restore_sysctls()


# --- configuration files -----------------------------------------------------------------------


def containerd_config() -> str:
    root = STATE / "containerd"
    return f"""version = 2
root = "{root}/root"
state = "{root}/run"
oom_score = 0

[grpc]
  address = "{CTRD_SOCK}"

[debug]
  level = "info"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{images.PAUSE_IMAGE}"
  enable_selinux = false
  # root here lacks CAP_SYS_RESOURCE (not in the bounding set): runc cannot lower a process's
  # oom_score_adj (sandboxes ask for -998), so cap it at containerd's own score (0)
  restrict_oom_score_adj = true
  max_container_log_line_size = 16384
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{cni_bin_dir()}"
    conf_dir = "{STATE / "cni" / "net.d"}"

[plugins."io.containerd.internal.v1.opt"]
  path = "{root}/opt"
"""


def cni_bin_dir() -> str:
    for d in ("/usr/lib/cni", "/opt/cni/bin", "/usr/libexec/cni"):
        if Path(d, "bridge").is_file():
            return d
    raise SystemExit("CNI plugins missing: apt-get install containernetworking-plugins")


def cni_config() -> str:
    return json.dumps(
        {
            "cniVersion": "1.0.0",
            "name": "j2k",
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": BRIDGE,
                    "isGateway": True,
                    "ipMasq": False,
                    "hairpinMode": True,
                    "ipam": {
                        "type": "host-local",
                        "ranges": [[{"subnet": POD_CIDR}]],
                        "routes": [{"dst": "0.0.0.0/0"}],
                        "dataDir": str(STATE / "cni" / "ipam"),
                    },
                },
                {"type": "portmap", "capabilities": {"portMappings": True}},
            ],
        },
        indent=2,
    )


def kubelet_config() -> str:
    return json.dumps(
        {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            "address": NODE_IP,
            "port": 10250,
            "readOnlyPort": 0,
            "healthzBindAddress": "127.0.0.1",
            "healthzPort": 10248,
            "authentication": {
                "anonymous": {"enabled": False},
                "webhook": {"enabled": True},
                "x509": {"clientCAFile": str(PKI / "ca.crt")},
            },
            "authorization": {"mode": "Webhook"},
            "tlsCertFile": str(PKI / "kubelet.crt"),
            "tlsPrivateKeyFile": str(PKI / "kubelet.key"),
            "cgroupDriver": "cgroupfs",
            "failCgroupV1": False,
            "containerRuntimeEndpoint": f"unix://{CTRD_SOCK}",
            "clusterDomain": CLUSTER_DOMAIN,
            "clusterDNS": [DNS_IP],
            # no upstream resolvers: names outside the cluster do not resolve (no traffic out)
            "resolvConf": "",
            "failSwapOn": False,
            "protectKernelDefaults": False,
            "podLogsDir": str(STATE / "pod-logs"),
            "volumePluginDir": str(STATE / "kubelet-plugins"),
            # the images cannot be pulled again: never garbage-collect them
            "imageGCHighThresholdPercent": 100,
            "imageGCLowThresholdPercent": 99,
            "evictionHard": {
                "memory.available": "200Mi",
                "nodefs.available": "2%",
                "nodefs.inodesFree": "2%",
                "imagefs.available": "2%",
            },
            "serializeImagePulls": False,
            "maxPods": 110,
            "rotateCertificates": False,
            "serverTLSBootstrap": False,
            "shutdownGracePeriod": "0s",
        },
        indent=2,
    )


def kube_proxy_config() -> str:
    return json.dumps(
        {
            "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
            "kind": "KubeProxyConfiguration",
            "mode": "iptables",
            "clientConnection": {"kubeconfig": str(STATE / "kube-proxy.kubeconfig")},
            "hostnameOverride": NODE_NAME,
            "clusterCIDR": POD_CIDR,
            "bindAddress": "127.0.0.1",
            "healthzBindAddress": "127.0.0.1:10256",
            "metricsBindAddress": "127.0.0.1:10249",
            # NodePorts only on the node address, never on the machine's real interfaces
            "nodePortAddresses": [f"{NODE_IP}/32"],
            # leave the host's conntrack and route_localnet settings alone
            "conntrack": {
                "maxPerCore": 0,
                "min": 0,
                "tcpEstablishedTimeout": "0s",
                "tcpCloseWaitTimeout": "0s",
            },
            "iptables": {"localhostNodePorts": False, "masqueradeAll": False},
        },
        indent=2,
    )


# --- addons ------------------------------------------------------------------------------------


def render_manifest(path: Path, **values: object) -> str:
    """A YAML file with string.Template placeholders, filled: the manifests stay plain files
    (readable, lintable), the values (images, addresses, paths) come from this harness."""
    return string.Template(path.read_text()).substitute({k: str(v) for k, v in values.items()})


def apply_addons() -> None:
    coredns = render_manifest(
        MANIFESTS / "coredns.yaml", image=images.COREDNS_IMAGE, domain=CLUSTER_DOMAIN, dns_ip=DNS_IP
    )
    kubectl("apply", "-f", "-", input_text=coredns)
    (STATE / "volumes").mkdir(exist_ok=True)
    local_path = render_manifest(
        MANIFESTS / "local-path-provisioner.yaml",
        image=images.LOCAL_PATH_IMAGE,
        helper=images.BUSYBOX_IMAGE,
        volumes=STATE / "volumes",
    )
    kubectl("apply", "-f", "-", input_text=local_path)


# --- up ----------------------------------------------------------------------------------------

REQUIRED_COMMANDS = {
    "containerd": "containerd",
    "runc": "runc",
    "ctr": "containerd",
    "containerd-shim-runc-v2": "containerd",
    "iptables": "iptables",
    "ip": "iproute2",
    "conntrack": "conntrack",
    "openssl": "openssl",
    "go": "golang (Go >= 1.24)",
    "mount": "mount",
}


def preflight() -> None:
    if os.geteuid() != 0:
        raise SystemExit("e2e/cluster must run as root (it runs a kubelet and containerd)")
    missing = sorted({pkg for cmd, pkg in REQUIRED_COMMANDS.items() if not shutil.which(cmd)})
    if missing:
        raise SystemExit(
            "missing packages: apt-get install " + " ".join(missing) + "\n"
            "(see e2e/README.md for the full list)"
        )
    if not Path("/proc/sys/net/bridge").is_dir():
        run(["modprobe", "br_netfilter"], check=False)


def build_everything() -> None:
    t0 = time.monotonic()
    build.build_all(HOME)
    IMAGES.mkdir(parents=True, exist_ok=True)
    images.pause(BIN, IMAGES)
    images.coredns(BIN, IMAGES)
    images.busybox(BIN, IMAGES)
    images.local_path(BIN, IMAGES)
    log(f"binaries and images ready in {BIN} and {IMAGES} ({time.monotonic() - t0:.0f} s)")


def _http_ok(url: str) -> bool:
    r = run(
        ["curl", "-sf", "-o", "/dev/null", "--max-time", "2", url],
        check=False,
        capture=True,
        timeout=10,
    )
    return r.returncode == 0


def _api_ready() -> bool:
    return kubectl("get", "--raw", "/readyz", check=False, timeout=10).returncode == 0


def node_ready() -> bool:
    r = kubectl(
        "get",
        "node",
        NODE_NAME,
        "-o",
        "jsonpath={.status.conditions[?(@.type=='Ready')].status}",
        check=False,
    )
    return r.returncode == 0 and r.stdout.strip() == "True"


def load_images(tars: Sequence[Path]) -> list[str]:
    names: list[str] = []
    for tar in tars:
        r = ctr("images", "import", str(tar))
        names += [
            line.split()[1] for line in r.stdout.splitlines() if line.startswith("unpacking ")
        ] or [f"{tar}: {r.stdout.strip()}"]
    return names


def load_images_or_refs(items: Sequence[str]) -> list[str]:
    """Tarballs are imported as they are; other arguments are `docker save`d first."""
    names: list[str] = []
    refs = [i for i in items if not Path(i).is_file()]
    names += load_images([Path(i) for i in items if Path(i).is_file()])
    if refs:
        if not shutil.which("docker"):
            raise SystemExit(f"not files, and no docker to save them from: {refs}")
        with tempfile.TemporaryDirectory(dir=STATE) as tmp:
            tar = Path(tmp) / "images.tar"
            run(["docker", "save", "-o", str(tar), *refs], capture=True, timeout=1800)
            names += load_images([tar])
    return names


def up() -> None:
    preflight()
    t_all = time.monotonic()
    build_everything()
    t0 = time.monotonic()
    STATE.mkdir(parents=True, exist_ok=True)
    for sub in ("containerd", "cni/net.d", "cni/ipam", "kubelet", "pod-logs", "etcd"):
        (STATE / sub).mkdir(parents=True, exist_ok=True)
    make_pki()
    write_kubeconfig(KUBECONFIG, "admin")
    write_kubeconfig(STATE / "controller-manager.kubeconfig", "controller-manager")
    write_kubeconfig(STATE / "scheduler.kubeconfig", "scheduler")
    write_kubeconfig(STATE / "kubelet.kubeconfig", "kubelet-client")
    write_kubeconfig(STATE / "kube-proxy.kubeconfig", "kube-proxy")
    setup_host()

    os.chmod(STATE / "etcd", 0o700)
    start(
        "etcd",
        [
            str(BIN / "etcd"),
            "--name",
            "j2k",
            "--data-dir",
            str(STATE / "etcd"),
            "--listen-client-urls",
            ETCD_CLIENT,
            "--advertise-client-urls",
            ETCD_CLIENT,
            "--listen-peer-urls",
            ETCD_PEER,
            "--initial-advertise-peer-urls",
            ETCD_PEER,
            "--initial-cluster",
            f"j2k={ETCD_PEER}",
            "--quota-backend-bytes",
            str(2 << 30),
            "--log-level",
            "warn",
        ],
    )
    wait_for("etcd", lambda: _http_ok(f"{ETCD_CLIENT}/health"), 60, 0.5)

    _write_config(STATE / "containerd" / "config.toml", containerd_config())
    _write_config(STATE / "cni" / "net.d" / "10-j2k.conflist", cni_config())
    start("containerd", ["containerd", "--config", str(STATE / "containerd" / "config.toml")])
    wait_for("containerd", lambda: ctr("version", check=False, timeout=10).returncode == 0, 60, 0.5)

    pki = str(PKI)
    start(
        "kube-apiserver",
        [
            str(BIN / "kube-apiserver"),
            f"--advertise-address={NODE_IP}",
            f"--bind-address={NODE_IP}",
            f"--secure-port={API_PORT}",
            f"--etcd-servers={ETCD_CLIENT}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            f"--client-ca-file={pki}/ca.crt",
            f"--tls-cert-file={pki}/apiserver.crt",
            f"--tls-private-key-file={pki}/apiserver.key",
            f"--kubelet-client-certificate={pki}/apiserver-kubelet-client.crt",
            f"--kubelet-client-key={pki}/apiserver-kubelet-client.key",
            f"--kubelet-certificate-authority={pki}/ca.crt",
            "--kubelet-preferred-address-types=InternalIP",
            f"--service-account-key-file={pki}/sa.pub",
            f"--service-account-signing-key-file={pki}/sa.key",
            f"--service-account-issuer=https://kubernetes.default.svc.{CLUSTER_DOMAIN}",
            "--authorization-mode=Node,RBAC",
            "--enable-admission-plugins=NodeRestriction",
            "--allow-privileged=true",
            "--profiling=false",
        ],
    )
    wait_for("kube-apiserver", _api_ready, 120)
    common = ["--profiling=false", "--leader-elect=false", "--bind-address=127.0.0.1"]
    start(
        "kube-controller-manager",
        [
            str(BIN / "kube-controller-manager"),
            *common,
            f"--kubeconfig={STATE}/controller-manager.kubeconfig",
            f"--authentication-kubeconfig={STATE}/controller-manager.kubeconfig",
            f"--authorization-kubeconfig={STATE}/controller-manager.kubeconfig",
            f"--cluster-signing-cert-file={pki}/ca.crt",
            f"--cluster-signing-key-file={pki}/ca.key",
            f"--root-ca-file={pki}/ca.crt",
            f"--service-account-private-key-file={pki}/sa.key",
            "--use-service-account-credentials=true",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            f"--cluster-cidr={POD_CIDR}",
            "--allocate-node-cidrs=false",
            "--controllers=*,bootstrapsigner,tokencleaner",
        ],
    )
    start(
        "kube-scheduler",
        [
            str(BIN / "kube-scheduler"),
            *common,
            f"--kubeconfig={STATE}/scheduler.kubeconfig",
            f"--authentication-kubeconfig={STATE}/scheduler.kubeconfig",
            f"--authorization-kubeconfig={STATE}/scheduler.kubeconfig",
        ],
    )

    log("loading the cluster's own images into containerd")
    load_images(
        [
            IMAGES / "pause.tar",
            IMAGES / "coredns.tar",
            IMAGES / "busybox.tar",
            IMAGES / "local-path-provisioner.tar",
        ]
    )

    _write_config(STATE / "kubelet-config.json", kubelet_config())
    start(
        "kubelet",
        [
            str(BIN / "kubelet"),
            f"--config={STATE}/kubelet-config.json",
            f"--kubeconfig={STATE}/kubelet.kubeconfig",
            f"--root-dir={STATE}/kubelet",
            f"--hostname-override={NODE_NAME}",
            f"--node-ip={NODE_IP}",
        ],
    )
    _write_config(STATE / "kube-proxy-config.json", kube_proxy_config())
    start("kube-proxy", [str(BIN / "kube-proxy"), f"--config={STATE}/kube-proxy-config.json"])

    wait_for(f"node {NODE_NAME} Ready", node_ready, 180, 2)
    apply_addons()
    wait_for(
        "CoreDNS ready",
        lambda: (
            kubectl(
                "-n",
                "kube-system",
                "rollout",
                "status",
                "deployment/coredns",
                "--timeout=5s",
                check=False,
            ).returncode
            == 0
        ),
        180,
        1,
    )
    wait_for(
        "local-path-provisioner ready",
        lambda: (
            kubectl(
                "-n",
                "local-path-storage",
                "rollout",
                "status",
                "deployment/local-path-provisioner",
                "--timeout=5s",
                check=False,
            ).returncode
            == 0
        ),
        180,
        1,
    )
    log(
        f"cluster up: started in {time.monotonic() - t0:.0f} s "
        f"({time.monotonic() - t_all:.0f} s with builds); KUBECONFIG={KUBECONFIG}"
    )


# --- down --------------------------------------------------------------------------------------


def _our_mounts() -> list[str]:
    prefix = str(STATE) + "/"
    mounts = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].replace("\\040", " ")
        if point.startswith(prefix) or point == str(STATE):
            mounts.append(point)
    return mounts


def _our_shims() -> list[int]:
    """containerd shims started by this cluster's containerd (their -address is our socket)."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if (
            argv
            and argv[0].endswith(b"containerd-shim-runc-v2")
            and str(CTRD_SOCK).encode() in argv
        ):
            pids.append(int(proc.name))
    return pids


def down() -> None:
    if os.geteuid() != 0:
        raise SystemExit("e2e/cluster must run as root")
    from e2e import netpol

    netpol.down()
    stop("kube-proxy")
    stop("kubelet")
    if _pid_of("containerd") and (BIN / "cri-cleanup").is_file():
        # stop every pod sandbox through CRI: CNI DEL runs, network namespaces go away
        r = run([str(BIN / "cri-cleanup"), str(CTRD_SOCK)], check=False, capture=True, timeout=330)
        log((r.stdout + r.stderr).strip())
    for name in ("kube-scheduler", "kube-controller-manager", "kube-apiserver", "containerd"):
        stop(name)
    for pid in _our_shims():
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    stop("etcd")
    for point in sorted(_our_mounts(), key=len, reverse=True):
        if run(["umount", point], check=False, capture=True).returncode != 0:
            run(["umount", "-l", point], check=False, capture=True)
    teardown_host()
    if _our_mounts():
        raise SystemExit(f"still mounted under {STATE}: {_our_mounts()}")
    shutil.rmtree(STATE, ignore_errors=True)
    log("cluster down, state removed")


# --- status, images, misc ----------------------------------------------------------------------


def status() -> int:
    if not STATE.is_dir():
        print("cluster: not running (no state)")
        return 1
    healthy = True
    for name in COMPONENTS:
        pid = _pid_of(name)
        print(f"{name:26} {'running, pid ' + str(pid) if pid else 'NOT RUNNING'}")
        healthy = healthy and pid is not None
    if _pid_of("kube-apiserver"):
        ready = node_ready()
        print(f"{'node ' + NODE_NAME:26} {'Ready' if ready else 'NOT Ready'}")
        healthy = healthy and ready
        r = kubectl("get", "pods", "-A", "-o", "wide", check=False)
        print(r.stdout.rstrip() or r.stderr.rstrip())
    print(f"kubeconfig: {KUBECONFIG}")
    return 0 if healthy else 1


def exec_with_cluster_dns(cmd: Sequence[str]) -> None:
    """Runs CMD on the host, with cluster DNS: in a private mount namespace whose
    /etc/resolv.conf points at CoreDNS. The host reaches pod and Service IPs directly (the pod
    bridge and kube-proxy's OUTPUT rules), so in-cluster names such as Kafka's advertised
    listeners work from outside the cluster; nothing changes for other processes."""
    if not cmd:
        raise SystemExit("usage: e2e/cluster exec -- COMMAND [ARGS...]")
    resolv = STATE / "cluster-resolv.conf"
    resolv.write_text(
        f"nameserver {DNS_IP}\n"
        f"search default.svc.{CLUSTER_DOMAIN} svc.{CLUSTER_DOMAIN} "
        f"{CLUSTER_DOMAIN}\noptions ndots:5\n"
    )
    os.environ["KUBECONFIG"] = str(KUBECONFIG)
    os.environ["PATH"] = f"{BIN}:{os.environ.get('PATH', '')}"
    os.execvp(
        "unshare",
        [
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "--",
            "sh",
            "-c",
            'mount --bind "$0" /etc/resolv.conf && exec "$@"',
            str(resolv),
            *cmd,
        ],
    )


def kafka_image(load: bool) -> Path:
    from e2e import kafka_image as kimg

    tar = kimg.build(CACHE_ROOT, HOME / "images")
    if load:
        print("\n".join(load_images([tar])))
    return tar


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="e2e/cluster",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("up", help="build (first time) and start the cluster")
    sub.add_parser("down", help="stop everything this harness started and remove its state")
    sub.add_parser("status", help="components, node readiness, pods")
    sub.add_parser("kubeconfig", help="print the admin kubeconfig path")
    sub.add_parser("env", help="print shell exports (KUBECONFIG, PATH with kubectl)")
    sub.add_parser("build", help="only build binaries and images (cached)")
    li = sub.add_parser(
        "load-image",
        help="import images into the node's containerd: "
        "docker-save/OCI tarballs, or image names in the local Docker engine",
    )
    li.add_argument("images", nargs="+", help="FILE.tar or a Docker image reference")
    ex = sub.add_parser("exec", help="run a command with cluster DNS (and KUBECONFIG)")
    ex.add_argument("command", nargs=argparse.REMAINDER)
    np = sub.add_parser(
        "netpol", help="enforce NetworkPolicies (kube-router's policy controller) or stop it"
    )
    np.add_argument("action", choices=("up", "down"))
    ki = sub.add_parser("kafka-image", help="build the apache/kafka-compatible image")
    ki.add_argument("--load", action="store_true", help="also import it into the cluster")
    args = p.parse_args(argv)
    if args.cmd == "up":
        up()
    elif args.cmd == "down":
        down()
    elif args.cmd == "status":
        return status()
    elif args.cmd == "kubeconfig":
        print(KUBECONFIG)
    elif args.cmd == "env":
        print(f"export KUBECONFIG={KUBECONFIG}\nexport PATH={BIN}:$PATH")
    elif args.cmd == "build":
        build_everything()
    elif args.cmd == "load-image":
        if not _pid_of("containerd"):
            raise SystemExit("the cluster is not running (e2e/cluster up)")
        print("\n".join(load_images_or_refs(args.images)))
    elif args.cmd == "exec":
        cmd = args.command[1:] if args.command[:1] == ["--"] else args.command
        exec_with_cluster_dns(cmd)
    elif args.cmd == "netpol":
        from e2e import netpol

        netpol.up() if args.action == "up" else netpol.down()
    elif args.cmd == "kafka-image":
        print(kafka_image(args.load))
    return 0


if __name__ == "__main__":
    sys.exit(main())
