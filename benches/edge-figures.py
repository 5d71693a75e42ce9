#!/usr/bin/env python3
"""Edge figures for docs/deployment.md: binary sizes, start-to-ready (empty store, and with N
entries) and idle RSS, measured on a release binary.

start-to-ready is the time from spawn to the READY=1 datagram the server sends systemd
(Type=notify) once every listener accepts: this script plays systemd with its own NOTIFY_SOCKET.
A last series commits a batch of 1000 events, then kills the server with SIGKILL, so redb has to
recover on open.
The store is filled through the running server (HTTPS, POST /api/v1/events/batch, 1000 events per
request), so the entries are real sealed, hash-chained events.

With --quick-repair the config sets `storage.quick_repair = true` (every commit records redb's
allocator state, so the open after a crash loads it instead of walking the store).

usage: benches/edge-figures.py BINARY [--entries 1000000] [--runs 5] [--dir /var/tmp/pw-figures]
                               [--quick-repair]
"""
import argparse
import json
import os
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request


def config(dir_, port, quick_repair):
    path = os.path.join(dir_, "plantwire.toml")
    with open(path, "w") as f:
        f.write(f'version = 1\nsite = "figures"\nstate_dir = "{dir_}/state"\n'
                f'[server]\nlisten = ["127.0.0.1:{port}"]\n'
                f'[discovery]\nenabled = false\n'
                # The fill publishes far past a device's default token bucket (100/s).
                f'[events]\nrate_per_sec = 1000000\nburst = 1000000\n')
        if quick_repair:
            f.write('[storage]\nquick_repair = true\n')
    return path


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def env():
    e = {k: v for k, v in os.environ.items()
         if not k.startswith("PLANTWIRE_") and k not in ("RUST_LOG", "NOTIFY_SOCKET", "JOURNAL_STREAM")}
    e["RUST_LOG"] = "warn"
    return e


def start(binary, cfg):
    """Spawns `serve`; returns (process, seconds to READY=1)."""
    sock_dir = tempfile.mkdtemp()
    path = os.path.join(sock_dir, "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(120)
    e = env()
    e["NOTIFY_SOCKET"] = path
    t0 = time.perf_counter()
    proc = subprocess.Popen([binary, "serve", "--config", cfg], env=e,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while True:
        msg = sock.recv(4096).decode()
        if "READY=1" in msg.splitlines():
            took = time.perf_counter() - t0
            break
    sock.close()
    shutil.rmtree(sock_dir)
    return proc, took


def stop(proc):
    proc.terminate()
    proc.wait(timeout=60)


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def publish(dir_, port, token, entries):
    """Publishes `entries` events through the running server, 1000 per batch request."""
    ctx = ssl.create_default_context(cafile=os.path.join(dir_, "state/tls/ca.crt"))
    ctx.check_hostname = False
    body = json.dumps({"events": [
        {"source": "pump-7", "type": "pressure.high", "severity": "warning",
         "message": "pressure above limit", "attributes": {"bar": 7.5, "n": i}}
        for i in range(1000)]}).encode()
    t0 = time.perf_counter()
    done = 0
    while done < entries:
        req = urllib.request.Request(f"https://127.0.0.1:{port}/api/v1/events/batch", data=body,
                                     headers={"Content-Type": "application/json",
                                              "Authorization": f"Bearer {token}"})
        with urllib.request.urlopen(req, context=ctx) as res:
            assert res.status == 201, res.status
        done += 1000
        if done % 100000 == 0:
            print(f"  filled {done} ({done / (time.perf_counter() - t0):.0f}/s)", file=sys.stderr)


def fill(binary, cfg, dir_, port, entries):
    out = subprocess.run([binary, "device", "add", "bench", "--config", cfg], env=env(),
                         capture_output=True, text=True, check=True)
    token = out.stdout.strip().splitlines()[-1].strip()
    proc, _ = start(binary, cfg)
    publish(dir_, port, token, entries)
    stop(proc)
    return token


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("binary")
    ap.add_argument("--entries", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--dir", default="/var/tmp/pw-figures")
    ap.add_argument("--quick-repair", action="store_true")
    a = ap.parse_args()
    shutil.rmtree(a.dir, ignore_errors=True)
    os.makedirs(a.dir)
    port = free_port()
    cfg = config(a.dir, port, a.quick_repair)
    print(f"storage.quick_repair: {str(a.quick_repair).lower()}")

    print(f"binary: {a.binary} ({os.path.getsize(a.binary)} bytes)")
    proc, first = start(a.binary, cfg)
    time.sleep(3)
    rss = rss_kib(proc.pid)
    stop(proc)
    print(f"first start (CA, keys, first admin) to READY=1: {first * 1000:.0f} ms")
    print(f"idle RSS 3 s after READY=1 (first start): {rss / 1024:.1f} MiB")

    def series(label):
        times, rsss = [], []
        for _ in range(a.runs):
            proc, took = start(a.binary, cfg)
            time.sleep(3)
            rsss.append(rss_kib(proc.pid))
            stop(proc)
            times.append(took * 1000)
        print(f"{label}: start to READY=1 median {statistics.median(times):.0f} ms "
              f"(min {min(times):.0f}, max {max(times):.0f}, {a.runs} runs); "
              f"idle RSS median {statistics.median(rsss) / 1024:.1f} MiB")

    series("empty log")
    token = fill(a.binary, cfg, a.dir, port, a.entries)
    size = os.path.getsize(os.path.join(a.dir, "state/plantwire.redb"))
    print(f"store with {a.entries} entries: {size / 1e6:.0f} MB")
    series(f"{a.entries} entries")

    # After a crash redb rebuilds its allocator state from the tree before the store opens
    # (unless quick repair recorded it). The server commits a batch first: killed idle, with
    # nothing committed since a clean start, there is nothing to repair.
    times = []
    for _ in range(3):
        proc, _ = start(a.binary, cfg)
        publish(a.dir, port, token, 1000)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc, took = start(a.binary, cfg)
        times.append(took * 1000)
        stop(proc)
    print(f"{a.entries} entries, after SIGKILL: start to READY=1 median "
          f"{statistics.median(times):.0f} ms (min {min(times):.0f}, max {max(times):.0f}, 3 runs)")


if __name__ == "__main__":
    main()
