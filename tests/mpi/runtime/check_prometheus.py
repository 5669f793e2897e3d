#!/usr/bin/env python3
"""A real Prometheus server scrapes a running strata-run and answers a PromQL query for its hit counter.

usage: check_prometheus.py PROMETHEUS RANKS -- COMMAND...
Starts PROMETHEUS (Debian's /usr/bin/prometheus) on a free loopback port, from a prometheus.yml
generated in a temporary directory (storage there too; scrape_interval 1s) whose job `strata`
scrapes the ports N .. N+RANKS-1 on 127.0.0.1, where N is a free port with RANKS-1 free ports after
it. Waits until Prometheus is ready, then runs COMMAND (a strata-run of RANKS ranks on this host
under mpirun, one TP group: --tp RANKS, so that a rank's tp label is its world rank) in the
temporary directory with `--metrics-port N --metrics-address 127.0.0.1 --metrics-file
DIR/strata-{rank}.prom --metrics-interval-s 0.5` appended. Polls Prometheus's HTTP API
(/api/v1/query) for strata_hit_tokens_total{tier="device"} until every rank's series has a value
> 0, checks each series' labels (job, instance, rank, tp, cp, pp, dp, host, tier), and that each
rank's metrics file holds a device hit count > 0 too. Stops every process it started (its own
process groups), on success, failure, and SIGTERM/SIGINT (ctest's timeout). Everything is polled
with generous deadlines.
"""
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

DEADLINE_S = 400  # for the whole check; ctest's TIMEOUT is above it
started = []  # subprocess.Popen of every process group this script started


def stop_all():
    for p in started:
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
    for p in started:
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait()


def on_signal(signum, _frame):
    stop_all()
    sys.exit(f"stopped by signal {signum}")


def port_free(port):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def free_ports(count, avoid=()):
    """A port N such that N .. N+count-1 are free now (asked of the kernel, then checked)."""
    for _ in range(200):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            first = s.getsockname()[1]
        ports = range(first, first + count)
        if first + count <= 65535 and not set(ports) & set(avoid) and all(map(port_free, ports)):
            return first
    sys.exit(f"no run of {count} free ports found")


def get_json(url, timeout=10):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return json.loads(r.read().decode())


def wait_ready(prom_url, prom, log_path):
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if prom.poll() is not None:
            sys.exit(f"prometheus exited with {prom.returncode}:\n{tail(log_path)}")
        try:
            with urllib.request.urlopen(prom_url + "/-/ready", timeout=5) as r:
                if r.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.2)
    sys.exit(f"prometheus not ready after 120 s:\n{tail(log_path)}")


def tail(path, n=4000):
    try:
        with open(path, errors="replace") as f:
            return f.read()[-n:]
    except OSError:
        return ""


def query(prom_url, expr):
    url = prom_url + "/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    try:
        body = get_json(url)
    except (urllib.error.URLError, ConnectionError, TimeoutError, ValueError):
        return None
    if body.get("status") != "success":
        sys.exit(f"query {expr} failed: {body}")
    return body["data"]["result"]


def main():
    if len(sys.argv) < 5 or sys.argv[3] != "--":
        sys.exit(__doc__)
    prometheus, ranks, command = sys.argv[1], int(sys.argv[2]), sys.argv[4:]
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="strata-prometheus-") as tmp:
        metrics_port = free_ports(ranks)
        prom_port = free_ports(1, avoid=range(metrics_port, metrics_port + ranks))
        targets = ", ".join(f"'127.0.0.1:{metrics_port + r}'" for r in range(ranks))
        config = os.path.join(tmp, "prometheus.yml")
        with open(config, "w") as f:
            f.write("global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
                    "scrape_configs:\n  - job_name: strata\n"
                    f"    static_configs:\n      - targets: [{targets}]\n")
        prom_log = os.path.join(tmp, "prometheus.log")
        prom_url = f"http://127.0.0.1:{prom_port}"
        with open(prom_log, "w") as log:
            prom = subprocess.Popen(
                [prometheus, f"--config.file={config}",
                 f"--storage.tsdb.path={os.path.join(tmp, 'data')}",
                 f"--web.listen-address=127.0.0.1:{prom_port}"],
                stdout=log, stderr=subprocess.STDOUT, cwd=tmp, start_new_session=True)
        started.append(prom)
        try:
            wait_ready(prom_url, prom, prom_log)
            run_log = os.path.join(tmp, "strata-run.log")
            with open(run_log, "w") as log:
                run = subprocess.Popen(
                    command + ["--metrics-port", str(metrics_port),
                               "--metrics-address", "127.0.0.1",
                               "--metrics-file", os.path.join(tmp, "strata-{rank}.prom"),
                               "--metrics-interval-s", "0.5",
                               "--report", os.path.join(tmp, "report.json")],
                    stdout=log, stderr=subprocess.STDOUT, cwd=tmp, start_new_session=True)
            started.append(run)
            expr = 'strata_hit_tokens_total{tier="device"}'
            result = []
            while time.monotonic() - start < DEADLINE_S:
                result = query(prom_url, expr) or []
                values = {s["metric"].get("rank"): float(s["value"][1]) for s in result}
                if len(values) == ranks and all(v > 0 for v in values.values()):
                    break
                if run.poll() is not None:
                    # The last scrape may have come after the run's final figures: ask once
                    # more after a scrape interval's worth of Prometheus time.
                    time.sleep(2)
                    result = query(prom_url, expr) or []
                    break
                time.sleep(0.5)
            values = {s["metric"].get("rank"): float(s["value"][1]) for s in result}
            if len(values) != ranks or not all(v > 0 for v in values.values()):
                up = query(prom_url, "up")
                sys.exit(f"{expr} never had a value > 0 for each of {ranks} ranks (got "
                         f"{result}; up: {up}; run exit {run.poll()}):\n"
                         f"{tail(run_log)}\n--- prometheus:\n{tail(prom_log)}")
            host = socket.gethostname()
            for s in result:
                m = s["metric"]
                rank = int(m["rank"])
                want = {"__name__": "strata_hit_tokens_total", "job": "strata",
                        "instance": f"127.0.0.1:{metrics_port + rank}", "tier": "device",
                        "host": host, "cp": "0", "pp": "0", "dp": "0", "tp": str(rank)}
                wrong = {k: (m.get(k), v) for k, v in want.items() if m.get(k) != v}
                if wrong:
                    sys.exit(f"series of rank {rank} has wrong labels (got, want): {wrong}\n{s}")
            # The same text in each rank's file (the textfile collector's way), refreshed every
            # 0.5 s while the run goes on.
            line = re.compile(r'^strata_hit_tokens_total\{rank="(\d+)",.*tier="device"\} (\d+)$',
                              re.M)
            deadline = time.monotonic() + 120
            files = {}
            while time.monotonic() < deadline:
                files = {}
                for r in range(ranks):
                    m = line.search(tail(os.path.join(tmp, f"strata-{r}.prom"), 10**6))
                    if m and int(m.group(1)) == r and int(m.group(2)) > 0:
                        files[r] = int(m.group(2))
                if len(files) == ranks:
                    break
                time.sleep(0.5)
            if len(files) != ranks:
                sys.exit(f"metrics files strata-{{rank}}.prom lack a device hit count > 0 for "
                         f"every rank (found {files}; in {os.listdir(tmp)}):\n{tail(run_log)}")
            print(f"ok: Prometheus on port {prom_port} scraped {ranks} ranks on ports "
                  f"{metrics_port}..{metrics_port + ranks - 1}; {expr} = "
                  + ", ".join(f"rank {r}: {v:.0f}" for r, v in sorted(values.items())))
        finally:
            stop_all()


if __name__ == "__main__":
    main()
