"""A real single-node Slurm for tests: install (Debian packages), start, stop.

    from slurm_cluster import SlurmCluster, ensure_slurm_installed
    reason = ensure_slurm_installed()        # None, or why Slurm cannot be had here
    with SlurmCluster() as cluster:          # munged, slurmctld, slurmd; waits for an idle node
        subprocess.run(["sbatch", "--wrap", "hostname"], env=cluster.env())

What it sets up (docs/cluster.md, "How this is tested"):
no systemd, no cgroups (ProctrackType=proctrack/linuxproc, TaskPlugin=task/none), no slurmdbd
(AccountingStorageType=accounting_storage/none: `sacct` does not work, use `squeue`, kept
informative by MinJobAge=600), the node line from `slurmd -C` with RealMemory lowered ~10 %,
everything on 127.0.0.1, state and logs in a private temporary folder.

The configuration goes to the default path /etc/slurm/slurm.conf, not to a $SLURM_CONF: the
Snakemake jobstep plugin removes every SLURM_* variable (SLURM_CONF included) before it runs a
job's command, so an `srun` inside a job would not find a configuration anywhere else. A
slurm.conf this module did not write is never overwritten, and an inter-process lock keeps two
test sessions on one machine from starting two clusters at once.

Every daemon started here is stopped by the pid in its pid file (``stop()``, also called by
``__exit__`` on failure); a munged that was already running is used and left alone.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SLURM_CONF = Path("/etc/slurm/slurm.conf")
MARKER = "# written by piff tests/slurm_cluster.py"
LOCK_FILE = Path(tempfile.gettempdir()) / "piff-slurm-cluster.lock"
MUNGE_SOCKET_DIR = Path("/run/munge")
PACKAGES = ["munge", "slurmctld", "slurmd", "slurm-client"]
SLURM_PLUGIN = "snakemake-executor-plugin-slurm>=2.7.1"


# ----------------------------------------------------------------------------- installation
def ensure_slurm_installed(timeout: float = 900) -> str | None:
    """Install munge and Slurm with apt-get when ``slurmctld`` is missing.

    Returns None when Slurm is usable, otherwise the reason it cannot be (for a skip).
    """
    if all(shutil.which(t, path=_sbin_path()) for t in ("slurmctld", "slurmd", "sbatch", "munged", "mungekey")):
        return None
    if os.geteuid() != 0:
        return ("Slurm is not installed and installing it needs root "
                "(apt-get install munge slurmctld slurmd slurm-client)")
    if not shutil.which("apt-get"):
        return "Slurm is not installed and this machine has no apt-get"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update", "-qq"],
                ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *PACKAGES]):
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
        if proc.returncode != 0:
            return f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr[-2000:]}"
    if not shutil.which("slurmctld", path=_sbin_path()):
        return "apt-get install succeeded but slurmctld is still not on PATH"
    return None


def ensure_slurm_plugin(timeout: float = 600) -> str | None:
    """pip-install the Snakemake SLURM executor plugin into this interpreter when it is missing."""
    try:
        import snakemake_executor_plugin_slurm  # noqa: F401
        return None
    except ImportError:
        pass
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", SLURM_PLUGIN],
                          capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        return f"pip install {SLURM_PLUGIN} failed: {proc.stderr[-2000:]}"
    return None


def _sbin_path() -> str:
    parts = os.environ.get("PATH", "").split(os.pathsep)
    return os.pathsep.join(parts + [p for p in ("/usr/sbin", "/sbin", "/usr/bin") if p not in parts])


# ----------------------------------------------------------------------------- the cluster
class SlurmCluster:
    """munged (unless one already answers) + slurmctld + slurmd on this machine."""

    partition = "debug"

    def __init__(self, keep_state: bool = False, lock_timeout: float = 900):
        self.keep_state = keep_state
        self.lock_timeout = lock_timeout
        self.root: Path | None = None
        self.hostname = socket.gethostname()
        self._lock = None
        self._pid_files: list[Path] = []
        self._wrote_conf = False

    # context manager: stop() also runs when start() or the body fails
    def __enter__(self) -> SlurmCluster:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def env(self) -> dict:
        """The environment for client commands (sbatch, squeue, snakemake --executor slurm)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "SBATCH_", "SRUN_"))}
        env["PATH"] = _sbin_path()
        return env

    def run(self, *cmd: str, timeout: float = 60, check: bool = True) -> subprocess.CompletedProcess:
        proc = subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout, env=self.env())
        if check and proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stdout}{proc.stderr}")
        return proc

    # -------------------------------------------------------------------------- start
    def start(self, timeout: float = 120) -> None:
        self._acquire_lock()
        if SLURM_CONF.exists() and MARKER not in SLURM_CONF.read_text():
            raise RuntimeError(f"{SLURM_CONF} exists and was not written by this helper: not touching it")
        self.root = Path(tempfile.mkdtemp(prefix="piff-slurm-"))
        self.root.chmod(0o755)  # munged (user munge) must reach its folder inside
        for sub in ("state", "spool", "log"):
            (self.root / sub).mkdir()
        self._start_munge()
        self._write_conf()
        self._pid_files.append(self.root / "slurmctld.pid")
        self._daemon("slurmctld", "-f", str(SLURM_CONF))
        self._pid_files.append(self.root / "slurmd.pid")
        self._daemon("slurmd", "-f", str(SLURM_CONF))
        self._wait_idle(timeout)

    def _acquire_lock(self) -> None:
        self._lock = open(LOCK_FILE, "w")
        deadline = time.monotonic() + self.lock_timeout
        while True:
            try:
                fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"another test session holds {LOCK_FILE} (a Slurm test cluster is running)") from None
                time.sleep(2)

    def _munge_works(self) -> bool:
        try:
            enc = subprocess.run(["munge", "-n"], capture_output=True, timeout=10)
            if enc.returncode != 0:
                return False
            dec = subprocess.run(["unmunge"], input=enc.stdout, capture_output=True, timeout=10)
            return dec.returncode == 0
        except (OSError, subprocess.TimeoutExpired):
            return False

    def _start_munge(self) -> None:
        if self._munge_works():
            return  # a running munged (the system's, or a previous one): use it, leave it alone
        import pwd

        munge = pwd.getpwnam("munge")
        mdir = self.root / "munge"
        mdir.mkdir(mode=0o700)
        os.chown(mdir, munge.pw_uid, munge.pw_gid)
        MUNGE_SOCKET_DIR.mkdir(parents=True, exist_ok=True)
        os.chown(MUNGE_SOCKET_DIR, munge.pw_uid, munge.pw_gid)
        MUNGE_SOCKET_DIR.chmod(0o755)
        key = mdir / "munge.key"
        subprocess.run(["mungekey", "--create", "--keyfile", str(key)], check=True, capture_output=True, timeout=30)
        os.chown(key, munge.pw_uid, munge.pw_gid)
        key.chmod(0o600)
        pid_file = mdir / "munged.pid"
        self._pid_files.append(pid_file)
        cmd = ["munged", f"--key-file={key}", f"--pid-file={pid_file}", f"--log-file={mdir / 'munged.log'}",
               f"--seed-file={mdir / 'munged.seed'}", f"--socket={MUNGE_SOCKET_DIR / 'munge.socket.2'}"]
        proc = subprocess.run(["runuser", "-u", "munge", "--", *cmd], capture_output=True, text=True, timeout=30,
                              env={**os.environ, "PATH": _sbin_path()})
        if proc.returncode != 0:
            raise RuntimeError(f"munged failed to start: {proc.stdout}{proc.stderr}")
        for _ in range(50):
            if self._munge_works():
                return
            time.sleep(0.2)
        raise RuntimeError(f"munged started but munge -n | unmunge fails; log: {self._tail(mdir / 'munged.log')}")

    def _node_line(self) -> str:
        out = subprocess.run(["slurmd", "-C"], capture_output=True, text=True, check=True, timeout=30,
                             env={**os.environ, "PATH": _sbin_path()}).stdout
        line = next(ln for ln in out.splitlines() if ln.startswith("NodeName="))
        mem = int(re.search(r"RealMemory=(\d+)", line).group(1))
        line = re.sub(r"RealMemory=\d+", f"RealMemory={int(mem * 0.9)}", line)
        return f"{line} NodeAddr=127.0.0.1 State=UNKNOWN"

    def _write_conf(self) -> None:
        r = self.root
        conf = f"""{MARKER} (state in {r}); removed when the test cluster stops
ClusterName=piff-test
SlurmctldHost={self.hostname}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SchedulerType=sched/backfill
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
ReturnToService=2
MinJobAge=600
KillWait=10
InactiveLimit=0
StateSaveLocation={r / 'state'}
SlurmdSpoolDir={r / 'spool'}
SlurmctldPidFile={r / 'slurmctld.pid'}
SlurmdPidFile={r / 'slurmd.pid'}
SlurmctldLogFile={r / 'log' / 'slurmctld.log'}
SlurmdLogFile={r / 'log' / 'slurmd.log'}
SlurmctldDebug=info
SlurmdDebug=info
{self._node_line()}
PartitionName={self.partition} Nodes=ALL Default=YES MaxTime=INFINITE State=UP
"""
        SLURM_CONF.parent.mkdir(parents=True, exist_ok=True)
        SLURM_CONF.write_text(conf)
        self._wrote_conf = True

    def _daemon(self, name: str, *args: str) -> None:
        proc = subprocess.run([name, *args], capture_output=True, text=True, timeout=60, env=self.env())
        if proc.returncode != 0:
            raise RuntimeError(f"{name} failed to start ({proc.returncode}): {proc.stdout}{proc.stderr}\n"
                               f"{self._tail(self.root / 'log' / f'{name}.log')}")

    def _wait_idle(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            proc = self.run("sinfo", "-h", "-N", "-o", "%N %t", check=False, timeout=20)
            last = proc.stdout + proc.stderr
            if proc.returncode == 0 and re.search(rf"^{re.escape(self.hostname)} idle\s*$", proc.stdout, re.M):
                return
            time.sleep(0.5)
        raise TimeoutError(f"the Slurm node did not become idle in {timeout:.0f} s; sinfo: {last}\n{self.logs()}")

    # -------------------------------------------------------------------------- inspection
    def logs(self, lines: int = 40) -> str:
        if self.root is None:
            return ""
        return "\n".join(f"--- {p.name}\n{self._tail(p, lines)}" for p in sorted((self.root / "log").glob("*.log")))

    def slurmctld_log(self) -> str:
        p = self.root / "log" / "slurmctld.log"
        return p.read_text(errors="replace") if p.exists() else ""

    @staticmethod
    def _tail(path: Path, lines: int = 40) -> str:
        try:
            return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return f"({path} unreadable)"

    # -------------------------------------------------------------------------- stop
    def stop(self) -> None:
        """Cancel remaining jobs, stop the daemons this object started (by pid file), clean up."""
        if self._wrote_conf:
            try:
                self.run("scancel", "--full", "--user", str(os.getuid()), check=False, timeout=20)
                deadline = time.monotonic() + 20
                while time.monotonic() < deadline:
                    q = self.run("squeue", "-h", "-t", "PD,R,CG", "-o", "%i", check=False, timeout=20)
                    if q.returncode != 0 or not q.stdout.strip():
                        break
                    time.sleep(0.5)
            except (OSError, subprocess.TimeoutExpired):
                pass
        for pid_file in reversed(self._pid_files):  # slurmd, slurmctld, munged
            self._kill_from_pid_file(pid_file)
        self._pid_files.clear()
        if self._wrote_conf:
            try:
                if MARKER in SLURM_CONF.read_text():
                    SLURM_CONF.unlink()
            except OSError:
                pass
            self._wrote_conf = False
        if self.root is not None and not self.keep_state:
            shutil.rmtree(self.root, ignore_errors=True)
        if self._lock is not None:
            fcntl.flock(self._lock, fcntl.LOCK_UN)
            self._lock.close()
            self._lock = None

    @staticmethod
    def _kill_from_pid_file(pid_file: Path, wait: float = 10) -> None:
        try:
            pid = int(pid_file.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.1)
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


if __name__ == "__main__":  # manual use: python tests/slurm_cluster.py  (starts, shows sinfo, waits for Enter)
    reason = ensure_slurm_installed()
    if reason:
        sys.exit(reason)
    with SlurmCluster() as c:
        print(c.run("sinfo").stdout)
        input("Slurm is up (sbatch/squeue work); press Enter to stop it ")
