"""Child workload for the adaptive-batching proof: items that cost about 1 MiB each.

Run as ``python tests/integration/_batch_workload.py fixed 500`` or ``... adaptive``
inside a memory-limited cgroup; prints one JSON line with the items processed, the
elapsed time and the processor's stats. Each batch holds ``item_bytes`` of touched
memory per item until it returns (as a batch of decoded images or parsed records
would), and pays a fixed ``overhead_ms`` per batch (a round trip, a kernel launch),
so bigger batches are faster until they no longer fit.
"""

from __future__ import annotations

import argparse
import itertools
import json
import resource
import sys
import time

PAGE = 4096


def make_process(  # type: ignore[no-untyped-def]
    item_bytes: int, overhead_s: float, ballast_bytes: int = 0, ballast_after: int = 0
):
    ones = b"\x01" * (item_bytes // PAGE)
    ballast: list[bytearray] = []
    done = [0]

    def process(batch: list[int]) -> list[int]:
        if ballast_bytes and not ballast and done[0] >= ballast_after:
            # Another part of the program (a cache, a second job) takes memory mid-run
            # and keeps it: the batches that fitted before no longer do.
            grab = bytearray(ballast_bytes)
            grab[::PAGE] = b"\x01" * (ballast_bytes // PAGE)
            ballast.append(grab)
        done[0] += len(batch)
        held = []
        for _ in batch:
            buf = bytearray(item_bytes)
            buf[::PAGE] = ones  # touch every page so it is resident, as real data would be
            held.append(buf)
        time.sleep(overhead_s)
        out = [item + held[i][0] for i, item in enumerate(batch)]
        del held
        return out

    return process


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["fixed", "adaptive"])
    ap.add_argument("batch", type=int, nargs="?", default=0)
    ap.add_argument("--items", type=int, default=2000)
    ap.add_argument("--item-bytes", type=int, default=1 << 20)
    ap.add_argument("--overhead-ms", type=float, default=10.0)
    ap.add_argument("--cut", type=float, default=None)
    ap.add_argument("--target", type=float, default=0.7)
    ap.add_argument("--initial", type=int, default=None)
    ap.add_argument("--no-governor", action="store_true")
    ap.add_argument("--measure", choices=["peak", "rss", "heap"], default=None)
    ap.add_argument("--ballast-mib", type=int, default=0)
    ap.add_argument("--ballast-after", type=int, default=0, help="items before the ballast")
    args = ap.parse_args(argv)
    process = make_process(
        args.item_bytes, args.overhead_ms / 1000, args.ballast_mib << 20, args.ballast_after
    )
    items = iter(range(args.items))  # a generator: the processor must not materialise it
    from memwarden.batch import AdaptiveBatchProcessor  # imported before the clock starts

    r0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    out: dict[str, object] = {"mode": args.mode}
    checksum = 0
    if args.mode == "fixed":
        n = batches = 0
        while True:
            batch = list(itertools.islice(items, args.batch))
            if not batch:
                break
            checksum += sum(process(batch))
            n += len(batch)
            batches += 1
        out["items"] = n
        out["batches"] = batches
    else:
        kwargs: dict[str, object] = {"target_usage": args.target}
        if args.cut is not None:
            kwargs["cut_factor"] = args.cut
        if args.initial is not None:
            kwargs["initial_batch"] = args.initial
        if args.measure is not None:
            kwargs["measure"] = args.measure
        if args.no_governor:
            kwargs["governor"] = None
        proc = AdaptiveBatchProcessor(process, max_batch=5000, **kwargs)  # type: ignore[arg-type]
        for r in proc.run(items):
            checksum += r
        st = proc.stats
        out.update(
            items=st.items,
            batches=st.batches,
            retries=st.retries,
            cuts=st.cuts,
            waits=st.waits,
            max_batch=st.max_batch_seen,
            item_bytes=st.item_bytes,
            peak_bytes=st.peak_bytes,
            limit_bytes=proc.max_memory_bytes,
            sizes=[s for _, s in list(st.sizes)[:40]],
        )
    elapsed_s = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu_s = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    # The per-batch overhead is a sleep (latency, not CPU): add it back to CPU time to get
    # a cost that other processes on a shared machine barely disturb.
    sleep_s = int(out["batches"]) * args.overhead_ms / 1000  # type: ignore[call-overload]
    n_items = int(out["items"])  # type: ignore[call-overload]
    out["elapsed_s"] = elapsed_s
    out["items_per_s"] = n_items / elapsed_s
    out["cpu_s"] = cpu_s
    out["items_per_cost_s"] = n_items / (cpu_s + sleep_s)
    out["checksum"] = checksum
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
