#!/usr/bin/env python3
"""Local PostgreSQL servers for tests and demos: a primary, optionally a synchronous standby.

Everything lives in one directory, listens on 127.0.0.1 only, on free ports, and is stopped by
PID. PostgreSQL refuses to run as root, so when started by root the servers run as the
`postgres` system user (runuser); the directory is handed to that user.

As a module:
    pg = PgCluster(dir).start_primary()          # or .start(standby=True)
    pg.conninfo()                                # "host=127.0.0.1 port=... dbname=xdm user=xdm"
    pg.kill("primary"); pg.promote("standby"); pg.stop()
From the shell:
    tools/pglocal.py start DIR [--standby]   prints the conninfo of the pair, returns when ready
    tools/pglocal.py stop DIR                stops every server started in DIR
    tools/pglocal.py promote DIR             promotes the standby
"""
import argparse
import glob
import json
import os
import pwd
import signal
import socket
import subprocess
import sys
import time

DB = "xdm"
USER = "xdm"


def pg_bindir():
    dirs = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
    if not dirs:
        raise RuntimeError("PostgreSQL server binaries not found (apt-get install postgresql-15)")
    return dirs[-1]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PgCluster:
    """A primary (and optionally one synchronous standby) under one directory."""

    def __init__(self, root):
        self.root = os.path.abspath(root)
        self.bindir = pg_bindir()
        self.state_file = os.path.join(self.root, "pglocal.json")
        self.nodes = {}  # name -> {"dir", "port"}
        if os.path.exists(self.state_file):
            with open(self.state_file) as f:
                self.nodes = json.load(f)

    # -- helpers ---------------------------------------------------------------------------
    def _as_pg(self, argv, capture=True):
        if os.geteuid() == 0:
            argv = ["runuser", "-u", "postgres", "--"] + argv
        out = subprocess.PIPE if capture else subprocess.DEVNULL
        r = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} failed ({r.returncode}): {r.stdout or ''}")
        return r

    def _chown(self, path):
        if os.geteuid() == 0:
            pw = pwd.getpwnam("postgres")
            os.chown(path, pw.pw_uid, pw.pw_gid)

    def _save(self):
        with open(self.state_file, "w") as f:
            json.dump(self.nodes, f)

    def _bin(self, name):
        return os.path.join(self.bindir, name)

    def pid(self, name):
        try:
            with open(os.path.join(self.nodes[name]["dir"], "postmaster.pid")) as f:
                return int(f.readline())
        except (OSError, ValueError, KeyError):
            return None

    def _start(self, name):
        node = self.nodes[name]
        log = os.path.join(self.root, name + ".log")
        if not os.path.exists(log):
            open(log, "w").close()
            self._chown(log)
        # pg_ctl's server child inherits stdout: give it no pipe to hold open.
        self._as_pg([self._bin("pg_ctl"), "-D", node["dir"], "-l", log, "-w", "-t", "60", "start"],
                    capture=False)

    def _wait_ready(self, name, timeout=60):
        port = self.nodes[name]["port"]
        deadline = time.time() + timeout
        while time.time() < deadline:
            r = subprocess.run([self._bin("pg_isready"), "-h", "127.0.0.1", "-p", str(port),
                                "-U", "postgres"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            if r.returncode == 0:
                return
            time.sleep(0.1)
        raise RuntimeError(f"PostgreSQL {name} on port {port} not ready")

    def psql(self, name, sql, db=DB):
        port = self.nodes[name]["port"]
        r = subprocess.run([self._bin("psql"), "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-h",
                            "127.0.0.1", "-p", str(port), "-U", "postgres", "-d", db, "-c", sql],
                           check=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        return r.stdout.strip()

    # -- life cycle ------------------------------------------------------------------------
    def start_primary(self):
        os.makedirs(self.root, exist_ok=True)
        self._chown(self.root)
        d = os.path.join(self.root, "primary")
        port = free_port()
        self.nodes["primary"] = {"dir": d, "port": port}
        self._as_pg([self._bin("initdb"), "-D", d, "-U", "postgres", "-A", "trust", "-E", "UTF8",
                     "--no-instructions"])
        conf = [
            "listen_addresses = '127.0.0.1'",
            f"port = {port}",
            f"unix_socket_directories = '{d}'",
            "max_connections = 200",
            "wal_level = replica",
            "max_wal_senders = 4",
            "wal_keep_size = 64MB",
            "fsync = on",
            "synchronous_commit = on",
            "log_min_messages = warning",
        ]
        with open(os.path.join(d, "postgresql.conf"), "a") as f:
            f.write("\n".join(conf) + "\n")
        with open(os.path.join(d, "pg_hba.conf"), "w") as f:
            f.write("local all all trust\n"
                    "host all all 127.0.0.1/32 trust\n"
                    "host replication all 127.0.0.1/32 trust\n")
        self._save()
        self._start("primary")
        self._wait_ready("primary")
        self.psql("primary", f"CREATE ROLE {USER} LOGIN SUPERUSER", db="postgres")
        self.psql("primary", f"CREATE DATABASE {DB} OWNER {USER}", db="postgres")
        return self

    def start_standby(self):
        d = os.path.join(self.root, "standby")
        port = free_port()
        self.nodes["standby"] = {"dir": d, "port": port}
        self._save()
        primary = self.nodes["primary"]["port"]
        self._as_pg([self._bin("pg_basebackup"), "-h", "127.0.0.1", "-p", str(primary), "-U",
                     "postgres", "-D", d, "-R", "-X", "stream", "-c", "fast"])
        with open(os.path.join(d, "postgresql.auto.conf"), "a") as f:
            f.write(f"port = {port}\nunix_socket_directories = '{d}'\n"
                    f"primary_conninfo = 'host=127.0.0.1 port={primary} user=postgres "
                    "application_name=standby'\n")
        self._start("standby")
        self._wait_ready("standby")
        # Wait until the standby streams synchronously, so a commit on the primary is on both.
        deadline = time.time() + 60
        while time.time() < deadline:
            st = self.psql("primary", "SELECT sync_state FROM pg_stat_replication "
                           "WHERE application_name = 'standby'", db="postgres")
            if st == "sync":
                return self
            if st == "async":
                # Only now: before the standby is there, every commit would wait for it.
                self.psql("primary", "ALTER SYSTEM SET synchronous_standby_names = 'standby'",
                          db="postgres")
                self.psql("primary", "SELECT pg_reload_conf()", db="postgres")
            time.sleep(0.1)
        raise RuntimeError("standby did not connect to the primary")

    def start(self, standby=False):
        self.start_primary()
        if standby:
            self.start_standby()
        return self

    def conninfo(self, nodes=None, extra=""):
        """libpq connection string over the given nodes (default all), read-write target."""
        names = nodes or [n for n in ("primary", "standby") if n in self.nodes]
        hosts = ",".join("127.0.0.1" for _ in names)
        ports = ",".join(str(self.nodes[n]["port"]) for n in names)
        s = f"host={hosts} port={ports} dbname={DB} user={USER}"
        if len(names) > 1:
            s += " target_session_attrs=read-write"
        return s + (" " + extra if extra else "")

    def kill(self, name, sig=signal.SIGKILL):
        pid = self.pid(name)
        if pid:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
            deadline = time.time() + 10
            while time.time() < deadline:
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.05)

    def promote(self, name="standby"):
        self._as_pg([self._bin("pg_ctl"), "-D", self.nodes[name]["dir"], "-w", "promote"])

    def stop(self):
        for name in list(self.nodes):
            pid = self.pid(name)
            if not pid:
                continue
            try:
                os.kill(pid, signal.SIGINT)  # fast shutdown
            except ProcessLookupError:
                continue
            deadline = time.time() + 30
            while time.time() < deadline:
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.05)
            else:
                os.kill(pid, signal.SIGKILL)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("command", choices=["start", "stop", "promote", "conninfo"])
    ap.add_argument("dir")
    ap.add_argument("--standby", action="store_true", help="also a synchronous standby")
    a = ap.parse_args()
    pg = PgCluster(a.dir)
    if a.command == "start":
        pg.start(standby=a.standby)
        print(pg.conninfo())
    elif a.command == "stop":
        pg.stop()
    elif a.command == "promote":
        pg.promote()
    else:
        print(pg.conninfo())
    return 0


if __name__ == "__main__":
    sys.exit(main())
