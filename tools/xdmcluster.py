#!/usr/bin/env python3
"""A local XDM cluster on loopback: a PostgreSQL primary with a synchronous standby
(tools/pglocal.py), N XDMS instances of each role on PostgreSQL, and the proxy in front with every
instance of a role in its upstream list.

From the shell (what `tools/xdm run --cluster` runs; Ctrl-C or SIGTERM stops everything by PID):
    tools/xdmcluster.py run --build build --data DIR --config DIR/xdm.conf [--ready-file F]
As a module (the failover test, tools/bench):
    c = Cluster("build", DIR, ports="free", instances=2)
    c.start(); c.proxy_addr; c.kill(c.xdms["shared-list"][0]); c.pg.kill("primary"); c.stop()

Layout under DIR: pg/ (the PostgreSQL pair), ROLE-1/, ROLE-2/ (each instance's data directory,
holding its UNIX-domain socket xdms.sock), aggproxy/ (the users), logs/ (one file per process
start, unless the output is inherited), cluster.conf (the store of each role, for xdmctl). One database per role (xdm_shared_list, xdm_presence,
xdm_rls), shared by the instances of that role. With store="lmdb" the instances of a role share
one LMDB directory DIR/ROLE instead (LMDB is multi-process), each with its own socket.
Standard library only.
"""
import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pglocal  # noqa: E402

LOOPBACK = "127.0.0.1"
ROLES = ("shared-list", "presence", "rls")
URL_KEYS = {"shared-list": "shared_list_url", "presence": "presence_url", "rls": "rls_url"}
PROXY_PORT, PROXY_METRICS = 8080, 9080
STOP_WAIT = 15  # seconds a process gets after SIGTERM before SIGKILL


_ports_given = set()


def free_port(udp_too=False):
    """A loopback port the kernel reports free, never handed out twice by this process (the
    ports are released before the servers bind them)."""
    for _ in range(200):
        with socket.socket() as t:
            t.bind((LOOPBACK, 0))
            port = t.getsockname()[1]
        if port in _ports_given:
            continue
        if udp_too:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
                try:
                    u.bind((LOOPBACK, port))
                except OSError:
                    continue
        _ports_given.add(port)
        return port
    raise RuntimeError("no free loopback port")


def database(role):
    return "xdm_" + role.replace("-", "_")


class Server:
    """One process of the cluster (the proxy or one XDMS instance)."""

    def __init__(self, cluster, name, argv, http_port, role=None, socket_path=None):
        self.cluster = cluster
        self.name = name  # "proxy", "shared-list-1", ...
        self.role = role
        self.argv = argv
        self.http_port = http_port
        self.socket = socket_path
        self.popen = None
        self.starts = 0
        self.log = None
        self.logs = []  # every start's log file
        self.stopped = False  # stopped or killed on purpose (not a crash)
        self.killed = False  # its last run ended with a signal sent on purpose

    @property
    def http_addr(self):
        return "%s:%d" % (LOOPBACK, self.http_port)

    def running(self):
        return self.popen is not None and self.popen.poll() is None

    def start(self):
        c = self.cluster
        self.starts += 1
        self.stopped = self.killed = False
        out = None
        if c.logs is not None:
            self.log = os.path.join(c.logs, "%s.%d.log" % (self.name, self.starts))
            self.logs.append(self.log)
            out = open(self.log, "wb")
            out.write(("# " + " ".join(self.argv) + "\n").encode())
            out.flush()
        try:
            # Own session: a terminal's Ctrl-C reaches the runner, which stops the servers in
            # order (proxy first, database last).
            self.popen = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=out,
                                          stderr=subprocess.STDOUT if out else None,
                                          env=c.env, start_new_session=True)
        finally:
            if out:
                out.close()

    def wait_ready(self, timeout=30):
        """Until the HTTP port (and the socket of an XDMS) accept connections."""
        deadline = time.monotonic() + timeout
        while True:
            if self.popen.poll() is not None:
                raise RuntimeError("%s exited with %s at start%s" % (
                    self.name, self.popen.returncode, self.tail()))
            ok = True
            try:
                with socket.create_connection((LOOPBACK, self.http_port), timeout=0.5):
                    pass
                if self.socket:
                    with socket.socket(socket.AF_UNIX) as s:
                        s.settimeout(0.5)
                        s.connect(self.socket)
            except OSError:
                ok = False
            if ok:
                return
            if time.monotonic() > deadline:
                raise RuntimeError("%s not ready within %ds%s" % (self.name, timeout, self.tail()))
            time.sleep(0.05)

    def tail(self, n=15):
        if not self.log:
            return ""
        try:
            with open(self.log, "rb") as f:
                lines = f.read().decode("utf-8", "replace").rstrip("\n").split("\n")
        except OSError:
            return ""
        return "\n" + "\n".join("    | " + l for l in lines[-n:])

    def send(self, sig):
        if self.running():
            try:
                self.popen.send_signal(sig)
            except ProcessLookupError:
                pass

    def stop(self, sig=signal.SIGTERM):
        """Returns the exit status (None if it was not running)."""
        if self.popen is None:
            return None
        self.send(sig)
        try:
            self.popen.wait(timeout=STOP_WAIT)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()
        return self.popen.returncode


class Cluster:
    """See the module's description. ports="default": the proxy on 127.0.0.1:8080 (admin 9080),
    instance N of the role with index R (1..3) on HTTP 8180+R+10(N-1), SIP 5080+R+10(N-1), admin
    9180+R+10(N-1) (so instance 1 keeps the single-instance defaults); ports="free": free
    loopback ports (tests)."""

    def __init__(self, build, data, config=None, ports="free", instances=2, store="postgresql",
                 standby=True, logs=True, xdms_options=(), proxy_options=(), env=None,
                 roles=ROLES):
        self.build = os.path.abspath(build)
        self.data = os.path.abspath(data)
        self.ports = ports
        self.instances = instances
        self.store = store
        self.standby = standby
        self.roles = tuple(roles)
        self.xdms_options = list(xdms_options)
        self.proxy_options = list(proxy_options)
        self.env = env
        os.makedirs(self.data, exist_ok=True)
        self.config = config or os.path.join(self.data, "xdm.conf")
        if not os.path.exists(self.config):
            with open(self.config, "w") as f:
                f.write("# the cluster runner passes everything on the command line\n")
        self.logs = os.path.join(self.data, "logs") if logs else None
        if self.logs:
            os.makedirs(self.logs, exist_ok=True)
        self.pg = None
        self.proxy_port = PROXY_PORT if ports == "default" else free_port()
        self.proxy_metrics = PROXY_METRICS if ports == "default" else free_port()
        self.xcap_root = "http://%s:%d/xcap-root" % (LOOPBACK, self.proxy_port)
        self.xdms = {r: [] for r in self.roles}  # role -> [Server, ...]
        self.proxy = None

    @property
    def proxy_addr(self):
        return "%s:%d" % (LOOPBACK, self.proxy_port)

    def servers(self):
        return [s for r in self.roles for s in self.xdms[r]] + ([self.proxy] if self.proxy else [])

    # -- the database ----------------------------------------------------------------------
    def start_database(self):
        """Starts the PostgreSQL pair in DATA/pg, or starts it again when DATA/pg holds one from an
        earlier run; creates the role databases that are missing."""
        if os.geteuid() == 0:
            # The servers run as the postgres user (pglocal), who must be able to pass through
            # DATA to DATA/pg: search permission only (the XDMS directories inside stay 0700).
            mode = os.stat(self.data).st_mode & 0o7777
            os.chmod(self.data, mode | 0o011)
            d = os.path.dirname(self.data)
            while d != os.path.dirname(d):
                if not os.stat(d).st_mode & 0o001:
                    raise RuntimeError("the postgres user cannot pass through %s to %s/pg (chmod "
                                       "o+x %s, or choose another --data)" % (d, self.data, d))
                d = os.path.dirname(d)
        self.pg = pglocal.PgCluster(os.path.join(self.data, "pg"))
        if self.pg.nodes and all(os.path.isdir(n["dir"]) for n in self.pg.nodes.values()):
            promoted = "standby" in self.pg.nodes and not os.path.exists(
                os.path.join(self.pg.nodes["standby"]["dir"], "standby.signal"))
            for name in self.pg.nodes:
                if name == "primary" and promoted:
                    # The standby was promoted: the old primary is behind it and must not take
                    # writes again. Only the new primary runs (without a standby).
                    print("xdm: the standby of %s/pg was promoted: starting it alone (remove "
                          "%s/pg for a fresh pair)" % (self.data, self.data), file=sys.stderr)
                    continue
                if not self.pg.pid(name) or not _alive(self.pg.pid(name)):
                    self.pg._start(name)
                self.pg._wait_ready(name)
        else:
            self.pg.nodes = {}
            self.pg.start(standby=self.standby)
        primary = self.primary()
        have = set(self.pg.psql(primary, "SELECT datname FROM pg_database", db="postgres")
                   .split("\n"))
        for r in self.roles:
            if database(r) not in have:
                self.pg.psql(primary, "CREATE DATABASE %s OWNER %s" % (database(r), pglocal.USER),
                             db="postgres")

    def write_store_conf(self):
        """DATA/cluster.conf: the store of each role in the servers' configuration format (the
        instances get the same settings on their command line). xdmctl --data DATA reads it, so
        that backup, restore, export, import and check find the databases. Not DATA/xdm.conf:
        `tools/xdm run` without --cluster shares that file and stays on LMDB."""
        path = os.path.join(self.data, "cluster.conf")
        text = "# written by tools/xdmcluster.py at each start: the store of each XDMS role\n"
        for r in self.roles:
            text += "[%s]\nstore = postgresql\npg_conninfo = %s\n" % (r, self.conninfo(r))
        with open(path + ".tmp", "w") as f:
            f.write(text)
        os.rename(path + ".tmp", path)

    def primary(self):
        """The node that takes writes (the standby once it was promoted)."""
        for name in self.pg.nodes:
            try:
                if self.pg.psql(name, "SELECT pg_is_in_recovery()", db="postgres") == "f":
                    return name
            except subprocess.CalledProcessError:
                continue  # not running
        raise RuntimeError("no PostgreSQL node accepts writes")

    def conninfo(self, role):
        # Both hosts and target_session_attrs=read-write (from pglocal): after a promotion the
        # XDMS find the new primary by themselves. connect_timeout bounds a host that does not
        # answer at all.
        return self.pg.conninfo().replace("dbname=" + pglocal.DB, "dbname=" + database(role)) + \
            " connect_timeout=2"

    # -- servers ---------------------------------------------------------------------------
    def _xdms(self, role, n):
        ri = ROLES.index(role) + 1
        if self.ports == "default":
            http, sip, metrics = (8180 + ri + 10 * (n - 1), 5080 + ri + 10 * (n - 1),
                                  9180 + ri + 10 * (n - 1))
        else:
            http, sip, metrics = free_port(), free_port(udp_too=True), free_port()
        name = "%s-%d" % (role, n)
        if self.store == "postgresql":
            data = os.path.join(self.data, name)
            sock = os.path.join(data, "xdms.sock")
            store = ["--option", "store=postgresql", "--option", "pg_conninfo=" +
                     self.conninfo(role)]
        else:
            # The instances of a role share one LMDB environment; each has its own socket.
            data = os.path.join(self.data, role)
            sock = os.path.join(data, "xdms-%d.sock" % n)
            store = []
        argv = [os.path.join(self.build, "xdms/xdms"), "--role", role, "--config", self.config,
                "--data", data, "--http", "%s:%d" % (LOOPBACK, http),
                "--sip", "%s:%d" % (LOOPBACK, sip), "--xcap-root", self.xcap_root + "/",
                "--option", "socket=" + sock,
                # Named instances of one role share the subscriptions (docs/sip.md): one that
                # dies has its dialogs taken over by the other.
                "--option", "instance=" + name,
                "--option", "metrics=%s:%d" % (LOOPBACK, metrics)] + store
        for kv in self.xdms_options:
            argv += ["--option", kv]
        s = Server(self, name, argv, http, role=role, socket_path=sock)
        s.sip_port = sip
        s.metrics_port = metrics
        s.data = data
        return s

    def _proxy(self):
        argv = [os.path.join(self.build, "aggproxy/aggproxy"), "--config", self.config,
                "--data", os.path.join(self.data, "aggproxy"), "--http", self.proxy_addr,
                "--option", "metrics=%s:%d" % (LOOPBACK, self.proxy_metrics)]
        for r in ROLES:
            # A whitespace-separated list of upstream instances: the proxy spreads requests over
            # the healthy ones. A role not deployed here keeps the configured URL.
            if self.xdms.get(r):
                argv += ["--option", "%s=%s" % (URL_KEYS[r], " ".join(
                    "unix:" + s.socket for s in self.xdms[r]))]
        # The cluster runs no ut XDMS (docs/ut.md): the proxy serves no Ut here.
        argv += ["--option", "ut_url=off"]
        for kv in self.proxy_options:
            argv += ["--option", kv]
        return Server(self, "proxy", argv, self.proxy_port)

    def add_user(self, xui, password):
        xdmctl = os.path.join(self.build, "tools/xdmctl")
        subprocess.run([xdmctl, "--data", self.data, "user", "del", xui],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        subprocess.run([xdmctl, "--data", self.data, "user", "add", xui, "--password", password],
                       check=True, stdout=subprocess.DEVNULL)

    def start(self, proxy=True):
        """Everything, in order: database, XDMS instances (in parallel), proxy. On a failure
        whatever started is stopped again before the exception leaves."""
        try:
            if self.store == "postgresql":
                self.start_database()
                self.write_store_conf()
            elif os.path.exists(os.path.join(self.data, "cluster.conf")):
                # On LMDB the roles are in DATA/ROLE, where xdmctl looks without the file.
                os.unlink(os.path.join(self.data, "cluster.conf"))
            for r in self.roles:
                for n in range(1, self.instances + 1):
                    s = self._xdms(r, n)
                    os.makedirs(s.data, exist_ok=True)
                    self.xdms[r].append(s)
            for s in self.servers():
                s.start()
            for s in self.servers():
                s.wait_ready()
            if proxy:
                self.proxy = self._proxy()
                self.proxy.start()
                self.proxy.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def kill(self, server, sig=signal.SIGKILL):
        server.stopped = server.killed = True
        server.send(sig)
        server.popen.wait()

    def restart(self, server):
        if server.running():
            server.stop()
        server.start()
        server.wait_ready()

    def dead(self):
        """The servers that exited although nobody stopped them."""
        return [s for s in self.servers() if s.popen is not None and s.popen.poll() is not None
                and not s.stopped]

    def stop(self):
        """Proxy first, then the XDMS instances, then PostgreSQL. Returns {name: exit status}."""
        rcs = {}
        order = ([self.proxy] if self.proxy else []) + [s for r in self.roles
                                                        for s in self.xdms[r]]
        for s in order:
            s.stopped = True
            s.send(signal.SIGTERM)
        for s in order:
            rc = s.stop()
            if rc is not None:
                rcs[s.name] = rc
        if self.pg is not None:
            self.pg.stop()
        return rcs


def _alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except (ProcessLookupError, PermissionError):
        return False


def cmd_run(a):
    c = Cluster(a.build, a.data, config=a.config, ports=a.ports, instances=a.instances,
                store=a.store, logs=a.logs, roles=a.roles.split(","),
                xdms_options=a.xdms_option, proxy_options=a.proxy_option)
    stopping = []

    def on_signal(signum, frame):
        if not stopping:
            stopping.append(signum)
            raise KeyboardInterrupt()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        if a.store == "postgresql":
            print("xdm: starting PostgreSQL primary + synchronous standby in %s/pg" % a.data,
                  file=sys.stderr, flush=True)
        c.start()
        for r in c.roles:
            for s in c.xdms[r]:
                print("xdm: %-14s HTTP %s  SIP %s:%d  socket %s" % (
                    s.name, s.http_addr, LOOPBACK, s.sip_port, s.socket), file=sys.stderr)
        if c.pg is not None:
            print("xdm: PostgreSQL %s" % c.pg.conninfo(), file=sys.stderr, flush=True)
        if a.ready_file:
            # What a caller needs to reach the cluster, as JSON (tools/bench reads it).
            info = {"proxy": c.proxy_addr,
                    "xdms": {r: [{"http": s.http_addr, "socket": s.socket,
                                  "sip": "%s:%d" % (LOOPBACK, s.sip_port)} for s in c.xdms[r]]
                             for r in c.roles},
                    "pg": c.pg.conninfo() if c.pg is not None else None}
            tmp = a.ready_file + ".tmp"
            with open(tmp, "w") as f:
                json.dump(info, f)
            os.rename(tmp, a.ready_file)
        while True:
            dead = c.dead()
            if dead:
                print("xdm: %s exited (status %s); stopping" % (
                    dead[0].name, dead[0].popen.returncode), file=sys.stderr)
                return 1
            time.sleep(0.5)
    except KeyboardInterrupt:
        return 0
    except (RuntimeError, OSError, subprocess.CalledProcessError) as e:
        print("xdm: the cluster did not start: %s" % e, file=sys.stderr)
        return 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print("xdm: stopping the cluster", file=sys.stderr, flush=True)
        c.stop()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="start the cluster on the default ports until SIGINT/SIGTERM")
    r.add_argument("--build", default="build")
    r.add_argument("--data", default="var")
    r.add_argument("--config", default=None, help="default DATA/xdm.conf")
    r.add_argument("--instances", type=int, default=2, choices=range(1, 10),
                   help="XDMS instances per role (default 2)")
    r.add_argument("--store", choices=("postgresql", "lmdb"), default="postgresql")
    r.add_argument("--ports", choices=("default", "free"), default="default",
                   help="default: the proxy on 127.0.0.1:8080 (see Cluster); free: any")
    r.add_argument("--roles", default=",".join(ROLES), help="XDMS roles to start")
    r.add_argument("--logs", action="store_true",
                   help="logs in DATA/logs/ instead of this process's output")
    r.add_argument("--xdms-option", action="append", default=[], metavar="KEY=VALUE")
    r.add_argument("--proxy-option", action="append", default=[], metavar="KEY=VALUE")
    r.add_argument("--ready-file", default=None,
                   help="written (JSON: the addresses) once every server is ready")
    a = ap.parse_args()
    return cmd_run(a)


if __name__ == "__main__":
    sys.exit(main())
