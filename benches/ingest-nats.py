#!/usr/bin/env python3
"""Closed-loop JetStream publishers for benches/ingest-nats.sh: for each publisher count, publishes
COUNT events (the same JSON body as `plantwire bench ingest`) to a file-backed stream, each publish
awaiting its ack, and prints events/s, p50/p99 latency and the server's CPU µs per event."""

import argparse
import asyncio
import time

import nats


def cpu_us(pid):
    with open(f"/proc/{pid}/stat") as f:
        rest = f.read().rsplit(")", 1)[1].split()
    # utime, stime: fields 14 and 15 of the line, in USER_HZ (100) ticks.
    return (int(rest[11]) + int(rest[12])) * 10_000


def pct(v, q):
    v = sorted(v)
    return v[round((len(v) - 1) * q)] if v else 0


async def run(url, pid, publishers, count, stream):
    nc = await nats.connect(url)
    js = nc.jetstream()
    await js.add_stream(name=stream, subjects=[f"{stream.lower()}.>"])
    issued = 0
    lat = []

    async def publisher(p):
        nonlocal issued
        while issued < count:
            n = issued
            issued += 1
            body = (
                f'{{"source":"bench-{p}","type":"bench.tick","severity":"info",'
                f'"message":"tick {n}","attributes":{{"n":{n}}}}}'
            ).encode()
            t = time.perf_counter()
            await js.publish(f"{stream.lower()}.bench-{p}", body)
            lat.append(int((time.perf_counter() - t) * 1e6))

    before = cpu_us(pid)
    t0 = time.perf_counter()
    await asyncio.gather(*(publisher(p) for p in range(publishers)))
    secs = time.perf_counter() - t0
    after = cpu_us(pid)
    await nc.close()
    return len(lat), secs, pct(lat, 0.5), pct(lat, 0.99), (after - before) / max(1, len(lat))


async def main():
    a = argparse.ArgumentParser()
    a.add_argument("--url", required=True)
    a.add_argument("--server-pid", type=int, required=True)
    a.add_argument("--count", type=int, default=20000)
    a.add_argument("--publishers", default="4,64,256")
    args = a.parse_args()
    print("NATS JetStream publish+ack (one connection, Python nats-py client)")
    print("publishers  events  seconds  events/s  p50 µs  p99 µs  server CPU µs/event")
    for i, n in enumerate(int(x) for x in args.publishers.split(",")):
        events, secs, p50, p99, cpu = await run(args.url, args.server_pid, n, args.count, f"EV{i}")
        print(f"{n:>10} {events:>7} {secs:>8.2f} {events / secs:>9.0f} {p50:>7} {p99:>7} {cpu:>20.1f}")


asyncio.run(main())
