"""A throwaway single-node SLURM cluster with job accounting and two fake GPUs, for the tests.

`slurm_cluster(root)` writes every config file, key, database, state and log below `root`
(nothing under /etc), starts munged, mariadbd, slurmdbd, slurmctld and slurmd as child
processes (their PIDs in `cluster.pids`), registers the cluster in accounting and yields a
`SlurmCluster` once `sinfo` shows the node idle. On exit, error included, it cancels the jobs
left and stops each daemon by its PID. Starting takes about 10-20 s, mostly making MariaDB's
data directory.

Debian's packages (bookworm: SLURM 22.05): slurm-wlm, slurmdbd, munge, mariadb-server. It runs
as root without systemd or cgroups:

- proctrack/linuxproc and task/none: no cgroup plugin, so no cgroup.conf;
- select/cons_tres by CPU and memory with a DefMemPerCPU: jobs share the node;
- GresTypes=gpu and Gres=gpu:2 whose gres.conf File= are two character devices made with
  mknod under `root`: a `--gpus=1` job sees CUDA_VISIBLE_DEVICES=0 or 1, and two such jobs
  run at once. A GPU GRES without files makes the node INVAL ("gres/gpu count reported lower
  than configured"); regular files instead of devices leave CUDA_VISIBLE_DEVICES empty;
- slurmdbd on MariaDB, AccountingStorageTRES=gres/gpu: `sacct` shows finished and cancelled
  jobs and their gres/gpu;
- every daemon listens on 127.0.0.1 only, on ports free when it starts: mariadbd
  --bind-address, and for the SLURM daemons CommunicationParameters=NoCtldInAddrAny,
  NoInAddrAny, which bind to the address the host name resolves to. Where that is not a
  loopback address they are left out (`cluster.loopback_only` False) and the SLURM daemons
  listen on every address, clients still reaching them through 127.0.0.1.

Client commands find this config through SLURM_CONF: run them with `cluster.env` (or
`cluster.run`). snakemake-executor-plugin-slurm's job step deletes every SLURM_* variable but
the job's identity, SLURM_CONF included, before its inner `srun`; a real cluster keeps its
config at the compiled-in /etc/slurm/slurm.conf, this one does not, so `cluster.env` also puts
first on PATH an `srun` that restores SLURM_CONF (sbatch --export=ALL hands PATH to the job).
"""

import contextlib
import os
import shutil
import signal
import socket
import stat
import subprocess
import time

# The binaries the cluster needs; `missing()` names those absent.
DAEMONS = ("munged", "mariadb-install-db", "mariadbd", "slurmdbd", "slurmctld", "slurmd")
CLIENTS = ("sinfo", "squeue", "sbatch", "srun", "scancel", "scontrol", "sacct", "sacctmgr")
PACKAGES = "slurm-wlm slurmdbd munge mariadb-server"
CLUSTER = "testcluster"
PARTITION = "gpu"
GPUS = 2
DB_PASSWORD = "slurm-test-only"


def missing():
    """The binaries of DAEMONS and CLIENTS not on PATH (or in /usr/sbin, which root's PATH
    may lack)."""
    path = os.environ.get("PATH", "") + os.pathsep + "/usr/sbin:/sbin"
    return [b for b in DAEMONS + CLIENTS if shutil.which(b, path=path) is None]


def which(binary):
    path = os.environ.get("PATH", "") + os.pathsep + "/usr/sbin:/sbin"
    found = shutil.which(binary, path=path)
    if found is None:
        raise FileNotFoundError("%s not found (apt-get install %s)" % (binary, PACKAGES))
    return found


class ClusterError(RuntimeError):
    pass


class SlurmCluster:
    """A started cluster: its node, partition, config, client environment and daemons."""

    def __init__(self, root):
        self.root = root
        self.node = socket.gethostname().split(".")[0]
        self.cluster = CLUSTER
        self.partition = PARTITION
        self.cpus = os.cpu_count() or 1
        self.real_memory = meminfo_mb()
        self.conf = os.path.join(root, "etc", "slurm.conf")
        self.bin = os.path.join(root, "bin")
        self.logs = os.path.join(root, "log")
        self.gpu_files = [os.path.join(root, "dev", "nvidia%d" % i) for i in range(GPUS)]
        self.env = client_env(self.conf, self.bin)
        self.loopback_only = resolves_to_loopback(self.node)
        self.procs = {}  # daemon name -> Popen, in start order
        self.timings = {}  # step -> seconds

    @property
    def pids(self):
        return {name: p.pid for name, p in self.procs.items()}

    # Client commands, with this cluster's config.

    def run(self, *argv, check=True, timeout=60, **kwargs):
        """Run a client command; returns the CompletedProcess (stdout, stderr as text)."""
        kwargs.setdefault("capture_output", True)
        kwargs.setdefault("text", True)
        res = subprocess.run(list(argv), env=self.env, timeout=timeout, **kwargs)
        if check and res.returncode != 0:
            raise ClusterError(
                "%s: exit %d\n%s%s" % (" ".join(argv), res.returncode, res.stdout, res.stderr)
            )
        return res

    def sbatch(self, *args, script="#!/bin/sh\ntrue\n", cwd=None):
        """Submit `script` (its text) with sbatch ARGS; returns the job id."""
        res = self.run("sbatch", "--parsable", *args, input=script, cwd=cwd or self.root)
        return res.stdout.strip().split(";")[0]

    def job(self, jobid):
        """`scontrol show job` of a job still known to slurmctld, as a dict of its fields."""
        out = self.run("scontrol", "show", "job", "--oneliner", jobid).stdout
        return dict(f.split("=", 1) for f in out.split() if "=" in f)

    def wait_state(self, jobid, states, timeout=30):
        """Wait until the job's state (slurmctld's) is one of `states`; returns it."""
        deadline = time.monotonic() + timeout
        while True:
            state = self.job(jobid).get("JobState")
            if state in states or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        if state not in states:
            raise ClusterError("job %s is %s after %d s, not %s" % (jobid, state, timeout, states))
        return state

    def sacct(self, jobid, fields="JobID,JobName,State,ExitCode,AllocTRES"):
        """sacct's rows of the job itself (no steps), each a dict of `fields`."""
        names = fields.split(",")
        out = self.run("sacct", "-X", "-n", "-P", "-j", jobid, "-o", fields).stdout
        return [dict(zip(names, line.split("|"))) for line in out.splitlines() if line]

    def wait_sacct(
        self, jobid, accept, timeout=30, fields="JobID,JobName,State,ExitCode,AllocTRES"
    ):
        """Wait until accounting's row of the job satisfies `accept(row)` (slurmctld sends
        job records to slurmdbd asynchronously); returns the row."""
        deadline = time.monotonic() + timeout
        rows = []
        while time.monotonic() < deadline:
            rows = self.sacct(jobid, fields)
            if rows and accept(rows[0]):
                return rows[0]
            time.sleep(0.3)
        raise ClusterError("sacct row of job %s after %d s: %s" % (jobid, timeout, rows))

    def jobs(self):
        """Ids of the jobs slurmctld has pending or running."""
        out = self.run("squeue", "-h", "-o", "%i", "-t", "PENDING,RUNNING,COMPLETING").stdout
        return out.split()

    def cancel_all(self, timeout=20):
        """Cancel every pending or running job and wait until none is left."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ids = self.jobs()
            if not ids:
                return
            self.run("scancel", *ids, check=False)
            time.sleep(0.3)
        raise ClusterError("jobs still queued after %d s: %s" % (timeout, self.jobs()))

    def log_tails(self, lines=25):
        """The last lines of every daemon's logs, for error messages."""
        out = []
        for name in sorted(os.listdir(self.logs)) if os.path.isdir(self.logs) else []:
            path = os.path.join(self.logs, name)
            with open(path, errors="replace") as f:
                tail = f.readlines()[-lines:]
            out.append("--- %s (last %d lines)\n%s" % (path, len(tail), "".join(tail)))
        return "\n".join(out)


def meminfo_mb():
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) // 1024
    raise ClusterError("no MemTotal in /proc/meminfo")


def resolves_to_loopback(name):
    try:
        addrs = {a[4][0] for a in socket.getaddrinfo(name, None, socket.AF_INET)}
    except socket.gaierror:
        return False
    return bool(addrs) and all(a.startswith("127.") for a in addrs)


def client_env(conf, bindir):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "SBATCH_", "SRUN_"))}
    env["SLURM_CONF"] = conf
    env["PATH"] = bindir + os.pathsep + env.get("PATH", "/usr/bin:/bin")
    return env


def free_ports(n):
    """n distinct TCP ports on 127.0.0.1 free right now."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def write(path, text, mode=0o644):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, mode)


def write_config(c, ports):
    """Every file the daemons read: munge key, fake GPU devices, slurm.conf, gres.conf,
    slurmdbd.conf, MariaDB's init SQL, the srun wrapper."""
    r = c.root
    for d in ("etc", "bin", "log", "run", "state", "spool", "dev", "munge", "mysql"):
        os.makedirs(os.path.join(r, d), mode=0o700, exist_ok=True)
    c.munge_socket = os.path.join(r, "munge", "munge.socket")
    c.mysql_port, c.dbd_port, c.ctld_port, c.slurmd_port = ports

    key = os.path.join(r, "munge", "munge.key")
    with open(os.open(key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o400), "wb") as f:
        f.write(os.urandom(1024))

    # Character devices (those of /dev/null): slurmd checks the type, never opens them.
    for path in c.gpu_files:
        os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(1, 3))

    write(os.path.join(r, "etc", "plugstack.conf"), "")
    cpu_mem = max(100, min(1000, c.real_memory // c.cpus // 2))
    bind = "CommunicationParameters=NoCtldInAddrAny,NoInAddrAny" if c.loopback_only else ""
    dbd_bind = "CommunicationParameters=NoInAddrAny" if c.loopback_only else ""
    write(
        c.conf,
        f"""\
ClusterName={c.cluster}
SlurmctldHost={c.node}(127.0.0.1)
SlurmctldPort={c.ctld_port}
SlurmdPort={c.slurmd_port}
{bind}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket={c.munge_socket}
CredType=cred/munge
PlugStackConfig={r}/etc/plugstack.conf
StateSaveLocation={r}/state
SlurmdSpoolDir={r}/spool
SlurmctldPidFile={r}/run/slurmctld.pid
SlurmdPidFile={r}/run/slurmd.pid
SlurmctldLogFile={r}/log/slurmctld.log
SlurmdLogFile={r}/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
# No cgroups: process tracking by /proc, no task binding.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
MpiDefault=none
# Jobs share the node by CPU and memory.
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
DefMemPerCPU={cpu_mem}
SchedulerType=sched/backfill
ReturnToService=2
# Finished jobs stay in squeue for 5 minutes (snakemake's squeue status mode needs that).
MinJobAge=300
KillWait=5
MailProg=/bin/true
InactiveLimit=0
GresTypes=gpu
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort={c.dbd_port}
AccountingStoragePass={c.munge_socket}
AccountingStorageTRES=gres/gpu
JobCompType=jobcomp/none
NodeName={c.node} NodeAddr=127.0.0.1 CPUs={c.cpus} RealMemory={c.real_memory} \
Gres=gpu:{GPUS} State=UNKNOWN
PartitionName={c.partition} Nodes={c.node} Default=YES MaxTime=INFINITE State=UP
""",
    )
    files = "%s/dev/nvidia[0-%d]" % (r, GPUS - 1)
    write(
        os.path.join(r, "etc", "gres.conf"),
        "AutoDetect=off\nNodeName=%s Name=gpu File=%s\n" % (c.node, files),
    )
    # slurmdbd reads slurmdbd.conf beside SLURM_CONF and insists on mode 600.
    write(
        os.path.join(r, "etc", "slurmdbd.conf"),
        f"""\
AuthType=auth/munge
AuthInfo=socket={c.munge_socket}
DbdHost=localhost
DbdAddr=127.0.0.1
{dbd_bind}
DbdPort={c.dbd_port}
SlurmUser=root
PidFile={r}/run/slurmdbd.pid
LogFile={r}/log/slurmdbd.log
DebugLevel=info
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort={c.mysql_port}
StorageUser=slurm
StoragePass={DB_PASSWORD}
StorageLoc=slurm_acct_db
""",
        mode=0o600,
    )
    write(
        os.path.join(r, "mysql", "init.sql"),
        f"""\
CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY '{DB_PASSWORD}';
GRANT ALL ON *.* TO 'slurm'@'127.0.0.1';
""",
    )
    write(
        os.path.join(c.bin, "srun"),
        f"""\
#!/bin/sh
# snakemake-executor-plugin-slurm's job step clears SLURM_CONF before its srun.
export SLURM_CONF="${{SLURM_CONF:-{c.conf}}}"
exec {which("srun")} "$@"
""",
        mode=0o755,
    )


def start(c, name, argv):
    """Start a daemon in the foreground of a child process, output to log/NAME.out."""
    out = open(os.path.join(c.logs, name + ".out"), "w")
    env = dict(c.env, SLURM_CONF=c.conf)
    try:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=c.root,
            start_new_session=True,
        )
    finally:
        out.close()
    c.procs[name] = proc
    return proc


def wait_until(c, what, ready, timeout, names=(), describe=None):
    """Poll `ready()` until true; fail with the logs (and `describe()`) when `timeout` passes
    or one of the daemons `names` exits."""
    t0 = time.monotonic()
    while not ready():
        for name in names:
            proc = c.procs[name]
            if proc.poll() is not None:
                raise ClusterError(
                    "%s exited with status %s before %s\n%s"
                    % (name, proc.returncode, what, c.log_tails())
                )
        if time.monotonic() - t0 > timeout:
            state = describe() if describe else ""
            raise ClusterError("%s: not within %d s %s\n%s" % (what, timeout, state, c.log_tails()))
        time.sleep(0.1)
    c.timings[what] = round(time.monotonic() - t0, 2)


def port_open(port):
    def ready():
        with contextlib.closing(socket.socket()) as s:
            s.settimeout(0.5)
            return s.connect_ex(("127.0.0.1", port)) == 0

    return ready


def node_state(c):
    res = c.run("sinfo", "-h", "-N", "-n", c.node, "-o", "%T", check=False, timeout=10)
    return res.stdout.strip() if res.returncode == 0 else ""


def node_report(c):
    """The node's state and reason, as sinfo shows them."""
    res = c.run("sinfo", "-h", "-N", "-n", c.node, "-o", "%T (%E)", check=False, timeout=10)
    return "(node %s: %s)" % (c.node, (res.stdout or res.stderr).strip())


def node_idle(c):
    state = node_state(c)
    if "drain" in state or state.startswith("inval"):
        raise ClusterError("%s\n%s" % (node_report(c), c.log_tails()))
    return state == "idle"


def stop(c, timeout=15):
    """SIGTERM each daemon by PID, last started first; SIGKILL one that does not exit."""
    for proc in reversed(list(c.procs.values())):
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@contextlib.contextmanager
def slurm_cluster(root, timeout=60):
    """Start the cluster in directory `root` (made if absent); yields the SlurmCluster.
    Raises ClusterError (with the daemons' log tails) when a step fails or `timeout` seconds
    pass."""
    os.makedirs(root, exist_ok=True)
    c = SlurmCluster(os.path.abspath(root))
    t0 = time.monotonic()
    try:
        write_config(c, free_ports(4))
        r = c.root
        start(
            c,
            "munged",
            [
                which("munged"),
                "--foreground",
                "--force",
                "--socket=" + c.munge_socket,
                "--key-file=%s/munge/munge.key" % r,
                "--pid-file=%s/run/munged.pid" % r,
                "--seed-file=%s/munge/munged.seed" % r,
                "--log-file=%s/log/munged.log" % r,
            ],
        )
        wait_until(c, "munged", lambda: os.path.exists(c.munge_socket), timeout, ["munged"])

        datadir = os.path.join(r, "mysql", "data")
        mysql = [
            "--no-defaults",
            "--datadir=" + datadir,
            "--user=root",
            "--innodb-log-file-size=8M",
            "--innodb-buffer-pool-size=32M",
        ]
        t = time.monotonic()
        res = subprocess.run(
            [which("mariadb-install-db"), mysql[0], "--skip-test-db"] + mysql[1:],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if res.returncode != 0:
            raise ClusterError("mariadb-install-db failed:\n%s%s" % (res.stdout, res.stderr))
        c.timings["mariadb-install-db"] = round(time.monotonic() - t, 2)
        start(
            c,
            "mariadbd",
            [which("mariadbd")]
            + mysql
            + [
                "--bind-address=127.0.0.1",
                "--port=%d" % c.mysql_port,
                "--socket=%s/mysql/mysqld.sock" % r,
                "--pid-file=%s/run/mariadbd.pid" % r,
                "--log-error=%s/log/mariadbd.log" % r,
                "--skip-name-resolve",
                "--init-file=%s/mysql/init.sql" % r,
            ],
        )
        wait_until(c, "mariadbd", port_open(c.mysql_port), timeout, ["mariadbd"])

        start(c, "slurmdbd", [which("slurmdbd"), "-D"])
        wait_until(c, "slurmdbd", port_open(c.dbd_port), timeout, ["slurmdbd"])
        # Register the cluster before slurmctld starts, so that it connects at once.
        t = time.monotonic()
        c.run("sacctmgr", "-i", "add", "cluster", c.cluster)
        c.timings["sacctmgr add cluster"] = round(time.monotonic() - t, 2)

        start(c, "slurmctld", [which("slurmctld"), "-D", "-i"])
        start(c, "slurmd", [which("slurmd"), "-D", "-N", c.node])
        wait_until(
            c, "node idle", lambda: node_idle(c), timeout, list(c.procs), lambda: node_report(c)
        )
        for name, proc in c.procs.items():
            if proc.poll() is not None:
                raise ClusterError(
                    "%s exited with status %s\n%s" % (name, proc.returncode, c.log_tails())
                )
        c.timings["start"] = round(time.monotonic() - t0, 2)
        yield c
    finally:
        try:
            if "slurmd" in c.procs and c.procs["slurmctld"].poll() is None:
                c.cancel_all()
        finally:
            stop(c)
