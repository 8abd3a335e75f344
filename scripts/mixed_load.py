#!/usr/bin/env python3
"""Mixed load against a real `postvault serve`, watching the server's memory.

Creates a vault (init, principals, a simulated slice collected), starts
`postvault serve` on a free loopback port, and for --seconds runs at once:
keep-alive readers (allowed and denied reads), public-log readers (entries,
proofs, checkpoints, tiles), officers (subject reports, disclosure lists,
transparency reports, metrics), NDJSON uploads, and short-lived connections
(one request each, some with bad tokens). Every second it samples the
server's VmRSS, VmHWM and thread count from /proc. Prints one JSON object:
the samples, the requests by kind and status, and a summary.

Standard library only. Usage:
  scripts/mixed_load.py --bin target/release/postvault --seconds 120
"""

import argparse
import http.client
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time


def run(bin_, data, *args, stdin=None):
    r = subprocess.run([bin_, "--data", data, *args], input=stdin,
                       capture_output=True, check=False)
    if r.returncode not in (0, 4):
        sys.exit(f"{' '.join(args)} failed ({r.returncode}): {r.stderr.decode()}")
    return r.stdout


def proc(pid):
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "VmHWM", "Threads"):
                out[k] = int(v.split()[0])
    return out


class Counter:
    def __init__(self):
        self.lock = threading.Lock()
        self.counts = {}

    def add(self, kind, status):
        with self.lock:
            key = f"{kind} {status}"
            self.counts[key] = self.counts.get(key, 0) + 1


def worker(addr, until, pick, counter, fresh=False):
    host, port = addr.rsplit(":", 1)
    conn = None
    while time.time() < until:
        if conn is None or fresh:
            if conn is not None:
                conn.close()
            conn = http.client.HTTPConnection(host, int(port), timeout=60)
        kind, method, path, token, body = pick()
        headers = {"Content-Length": str(len(body))}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        try:
            conn.request(method, path, body=body, headers=headers)
            r = conn.getresponse()
            r.read()
            counter.add(kind, r.status)
        except (OSError, http.client.HTTPException) as e:
            counter.add(kind, type(e).__name__)
            conn.close()
            conn = None
    if conn is not None:
        conn.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="target/release/postvault")
    ap.add_argument("--seconds", type=int, default=120)
    ap.add_argument("--scale", type=float, default=0.0002)
    ap.add_argument("--readers", type=int, default=32)
    ap.add_argument("--uploaders", type=int, default=4)
    ap.add_argument("--upload-lines", type=int, default=20000)
    ap.add_argument("--only", action="append", default=[],
                    help="run only these workers: read, log, officer, upload, fresh")
    ap.add_argument("--server-log", help="write the server's stderr here")
    ap.add_argument("--serve-arg", action="append", default=[],
                    help="an extra argument of `serve` (repeatable)")
    a = ap.parse_args()

    tmp = tempfile.mkdtemp(prefix="pv-mixed-")
    data = os.path.join(tmp, "vault")
    run(a.bin, data, "init")
    tokens = {}
    for name, role in [("ingest", "collector"), ("sorting", "delivery"),
                       ("ice", "agency"), ("officer", "privacy_officer")]:
        tokens[name] = json.loads(run(a.bin, data, "principal", "add", name,
                                      "--role", role))["token"]
    day = run(a.bin, data, "simulate", "--scale", str(a.scale), "--seed", "3")
    run(a.bin, data, "collect", "--as", "ingest", "-", stdin=day)
    lines = day.decode().splitlines()
    subjects = sorted({json.loads(l)["subject"] for l in lines[:200000]})
    # Uploads resend simulated lines under new subject ids, so the vault grows.
    upload_src = lines[: a.upload_lines]

    server = subprocess.Popen(
        [a.bin, "--data", data, "serve", "--listen", "127.0.0.1:0",
         "--sweep-interval", "0", *a.serve_arg],
        stdout=subprocess.PIPE,
        stderr=open(a.server_log, "wb") if a.server_log else subprocess.DEVNULL)
    addr = json.loads(server.stdout.readline())["listening"]
    pid = server.pid
    counter = Counter()
    until = time.time() + a.seconds
    log_size = [1]
    upload_no = [0]
    lock = threading.Lock()

    def read_pick():
        s = random.choice(subjects)
        if random.random() < 0.2:
            return ("read_denied", "GET",
                    f"/v1/subjects/{s}?purpose=immigration_enforcement",
                    tokens["ice"], b"")
        return ("read", "GET", f"/v1/subjects/{s}?purpose=delivery",
                tokens["sorting"], b"")

    def log_pick():
        r = random.random()
        n = max(log_size[0], 1)
        if r < 0.4:
            start = random.randrange(n)
            return ("log_entries", "GET",
                    f"/v1/log/entries?start={start}&end={start + 1000}", None, b"")
        if r < 0.7:
            return ("log_inclusion", "GET",
                    f"/v1/log/proof/inclusion?index={random.randrange(n)}", None, b"")
        if r < 0.85:
            return ("log_checkpoint", "GET", "/v1/log/checkpoint", None, b"")
        return ("log_tile", "GET", "/log/tile/0/000", None, b"")

    def officer_pick():
        r = random.random()
        s = random.choice(subjects)
        if r < 0.4:
            return ("subject_report", "GET", f"/v1/subjects/{s}/report",
                    tokens["officer"], b"")
        if r < 0.6:
            return ("disclosures", "GET", "/v1/disclosures", tokens["officer"], b"")
        if r < 0.8:
            return ("transparency", "GET", "/v1/reports/transparency",
                    tokens["officer"], b"")
        return ("metrics", "GET", "/metrics", tokens["officer"], b"")

    def upload_pick():
        with lock:
            upload_no[0] += 1
            k = upload_no[0]
        body = "\n".join(
            l.replace('"subject":"', f'"subject":"u{k}-', 1) for l in upload_src
        ).encode()
        return ("upload", "POST", "/v1/records?batch_size=2048",
                tokens["ingest"], body)

    def fresh_pick():
        if random.random() < 0.5:
            return ("bad_token", "GET", "/v1/disclosures",
                    f"pv_bad{random.randrange(10**9)}", b"")
        return ("health", "GET", "/health", None, b"")

    def size_watch():
        while time.time() < until:
            try:
                c = http.client.HTTPConnection(*addr.rsplit(":", 1), timeout=10)
                c.request("GET", "/v1/log/checkpoint")
                note = c.getresponse().read().decode()
                log_size[0] = int(note.splitlines()[1])
                c.close()
            except (OSError, ValueError, IndexError, http.client.HTTPException):
                pass
            time.sleep(1)

    threads = [threading.Thread(target=size_watch)]
    groups = [
        ("read", a.readers, read_pick, False),
        ("log", 4, log_pick, False),
        ("officer", 2, officer_pick, False),
        ("upload", a.uploaders, upload_pick, False),
        ("fresh", 4, fresh_pick, True),
    ]
    for name, n, pick, fresh in groups:
        if a.only and name not in a.only:
            continue
        for _ in range(n):
            threads.append(threading.Thread(
                target=worker, args=(addr, until, pick, counter, fresh)))
    samples = []
    t0 = time.time()
    samples.append({"t": 0, **proc(pid)})
    for t in threads:
        t.start()
    while time.time() < until:
        time.sleep(1)
        samples.append({"t": round(time.time() - t0), **proc(pid)})
    for t in threads:
        t.join()
    # After the load: idle for 15 s (blocking threads time out after 10 s).
    for _ in range(15):
        time.sleep(1)
        samples.append({"t": round(time.time() - t0), **proc(pid)})
    server.terminate()
    server.wait(timeout=60)
    rss = [s["VmRSS"] for s in samples]
    half = len([s for s in samples if s["t"] <= a.seconds]) // 2
    loaded = [s for s in samples if s["t"] <= a.seconds]
    out = {
        "seconds": a.seconds,
        "scale": a.scale,
        "serve_args": a.serve_arg,
        "only": a.only,
        "requests": dict(sorted(counter.counts.items())),
        "rss_kib": {
            "start": rss[0],
            "max": max(rss),
            "peak_first_half": max(s["VmRSS"] for s in loaded[:half]),
            "peak_second_half": max(s["VmRSS"] for s in loaded[half:]),
            "end_of_load": loaded[-1]["VmRSS"],
            "after_15s_idle": rss[-1],
        },
        "threads_max": max(s["Threads"] for s in samples),
        "samples": samples,
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
