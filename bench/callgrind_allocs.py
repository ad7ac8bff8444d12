#!/usr/bin/python3
"""Who allocates, from a callgrind dump of mqtt-proxy (callgrind_proxy.py
--keep; its dumps have uncompressed names): the calls of malloc (operator
new and asio's aligned frames and handlers come through it) attributed to
their first caller outside the allocator, asio's recycling allocator, the
standard library's containers and nlohmann::json, divided by a count (the
sessions of the measure). Through a wrapper called from several places the
calls are shared out in proportion to its callers' calls. Coroutine frames
show as the coroutine's ramp or actor; co_spawn as co_spawn_entry_point.

    bench/callgrind_allocs.py DUMP SESSIONS [--min 0.1]"""
import argparse
import collections
import re

WRAPPERS = re.compile(
    r"^(operator new|malloc|_mid_memalign|memalign|CRYPTO_|EVP_|OPENSSL_|0x[0-9a-f]+$|boost::asio::aligned_new|"
    r"(void\* )?boost::asio::detail::thread_info_base::allocate|boost::asio::asio_handler_allocate|"
    r"boost::asio::detail::awaitable_frame_base<.*>::operator new|"
    r"(void |bool )?std::|__gnu_cxx::|(void |bool )?nlohmann::)")
STRING = "std::__cxx11::basic_string<char, std::char_traits<char>, std::allocator<char> >"


def read_calls(dump):
    """callee -> caller -> calls, from the dump's fn=/cfn=/calls= lines."""
    callers = collections.defaultdict(collections.Counter)
    fn = callee = None
    with open(dump) as f:
        for line in f:
            if line.startswith("fn="):
                fn, callee = line[3:].strip(), None
            elif line.startswith("cfn="):
                callee = line[4:].strip()
            elif line.startswith("calls=") and callee:
                callers[callee][fn] += int(line[6:].split()[0])
                callee = None
    return callers


def attribute(callers, node, amount, out, seen, depth=0):
    """Shares `amount` calls of `node` out to its callers, through wrappers."""
    sources = callers.get(node)
    if not sources or depth > 12 or sum(sources.values()) == 0:
        out[node] += amount
        return
    total = sum(sources.values())
    for caller, n in sources.items():
        if caller in seen:
            continue
        share = amount * n / total
        if WRAPPERS.match(caller):
            attribute(callers, caller, share, out, seen | {caller}, depth + 1)
        else:
            out[caller] += share


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("dump")
    parser.add_argument("count", type=float, help="what to divide by: the sessions of the measure")
    parser.add_argument("--min", type=float, default=0.1, help="hide sites below this many per session")
    args = parser.parse_args()
    callers = read_calls(args.dump)
    out = collections.Counter()
    totals = collections.Counter()
    for callee, sources in callers.items():
        root = callee.split("'")[0]
        if root in ("malloc", "free", "memalign", "operator new(unsigned long)"):
            totals[root] += sum(sources.values())
        if root != "malloc":
            continue
        for caller, n in sources.items():
            if WRAPPERS.match(caller):
                attribute(callers, caller, n, out, {caller})
            else:
                out[caller] += n
    print(", ".join(f"{name} {n / args.count:.2f}" for name, n in sorted(totals.items())) + " per session")
    for name, n in out.most_common():
        if n / args.count < args.min:
            break
        name = name.replace(STRING, "std::string")
        name = re.sub(r"\((proxy::[a-z_]+::)?[a-z_]+\(.*\)::_Z\w+\.Frame\*\).*", "(frame) [actor]", name)
        print(f"{n / args.count:6.2f}  {name[:150]}")


if __name__ == "__main__":
    main()
