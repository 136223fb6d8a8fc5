#!/usr/bin/env python3
"""Where a profile's samples go, by part of pushq's Lambda, from a call-graph perf record.

    perf record --call-graph dwarf,16384 -F 5000 -o perf.data -p <pid of the bootstrap>
    perf script -i perf.data -F ip,sym > samples.txt
    python3 bench/perf-buckets.py samples.txt

Each sample goes to the first part (in the order below) that names one of its stack's frames.
A frame is named by its function's path, generics left out (`Client<C,B>::send_request` is
`hyper_util::client::legacy::client::Client::send_request`; `<X as Trait>::poll` is X's), so a
type named only in another's generic parameters does not claim the sample. A profile built with
`cargo build --profile profiling -p pushq-lambda` has the symbols (`strip = none`).
"""
import re
import sys
from collections import Counter

PARTS = [
    ("database: sqlx's ping (on acquire and on release)", r"^sqlx_postgres::connection::PgConnection::ping|Connection>::ping"),
    ("database: sqlx, statements", r"^sqlx"),
    ("FCM: TLS (rustls)", r"^(rustls|tokio_rustls)::"),
    # Over HTTP/2 (the profile pass's transport) only the Runtime API speaks HTTP/1.1.
    ("Lambda: the Runtime API's HTTP/1.1 connection (hyper h1)", r"^(hyper::proto::h1|hyper::client::conn::http1)"),
    ("FCM: the HTTP/2 connection's task (hyper, h2)", r"^(hyper::proto|h2::)"),
    ("FCM: a send's request and answer (hyper_util, reqwest, hyper's client)", r"^(hyper_util::client|reqwest::|hyper::client)"),
    ("FCM: pushq's client (token, retries, classifying)", r"^pushq_delivery::fcm::"),
    ("engine: request bodies", r"^pushq_delivery::request"),
    ("engine: the batch's phases (plan, claim, classify, settle)", r"^pushq_delivery::engine::batch"),
    ("engine: metrics lines", r"^pushq_delivery::metrics"),
    ("engine: the rest (store calls' SQL and rows, parsing envelopes)", r"^(pushq_delivery|pushq_model)::"),
    ("Lambda runtime (lambda_runtime or pushq's own, the event)", r"^(lambda_runtime|aws_lambda_events|serde_path_to_error|pushq_lambda::(event|runtime))"),
    ("pushq-lambda's main (the handler around the engine)", r"^pushq_lambda::"),
    ("tokio (scheduler, timers, I/O driver)", r"^tokio::"),
]


def head(frame):
    """A frame's function path without generics: `<X<T> as Y>::f` -> `X::f`, `a::B<T>::f` -> `a::B::f`."""
    name = re.sub(r"^[0-9a-f]+\s+", "", frame.strip())
    name = re.sub(r"\s+\(inlined\)$", "", name)
    if name.startswith("<"):
        m = re.match(r"<(.*?)(?: as .*)?>(::.*)?$", name)
        if m:
            name = m.group(1) + (m.group(2) or "")
    out, depth = [], 0
    for ch in name:
        if ch == "<":
            depth += 1
        elif ch == ">":
            depth = max(0, depth - 1)
        elif depth == 0:
            out.append(ch)
    return "".join(out)


def main(path):
    counts, stack = Counter(), []

    def flush():
        heads = [head(f) for f in stack]
        for part, pattern in PARTS:
            if any(re.search(pattern, h) for h in heads):
                counts[part] += 1
                return
        counts["other (kernel, libc, allocator outside these)"] += 1

    with open(path) as f:
        for line in f:
            if line.strip():
                stack.append(line)
            elif stack:
                flush()
                stack = []
    if stack:
        flush()
    total = sum(counts.values())
    print(f"| part | share of {total} samples |\n|---|---|")
    for part, n in counts.most_common():
        print(f"| {part} | {100 * n / total:.1f}% |")


if __name__ == "__main__":
    main(sys.argv[1])
