"""A DNS server on ADDRESS:53 (UDP) that knows no name: it answers every query with NXDOMAIN.
It prints "ready", then each name it is asked for. It stands for a cluster's DNS, which does not
know the names that only a pod's /etc/hosts holds. Serves until killed.

    dns_nxdomain.py ADDRESS
"""

import socket
import sys

NXDOMAIN_FLAGS = 0x8183  # a response, recursion desired and available, rcode 3


def question(query: bytes) -> tuple[str, int]:
    """The name the first question asks for, and the offset just past that question."""
    labels, offset = [], 12
    while query[offset]:
        labels.append(query[offset + 1 : offset + 1 + query[offset]].decode(errors="replace"))
        offset += 1 + query[offset]
    return ".".join(labels), offset + 1 + 4  # the root label, then type and class


def main(address: str) -> None:
    server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    server.bind((address, 53))
    print("ready", flush=True)
    while True:
        query, client = server.recvfrom(512)
        try:
            name, end = question(query)
        except IndexError:
            continue
        print(name, flush=True)
        header = query[:2] + NXDOMAIN_FLAGS.to_bytes(2, "big") + b"\x00\x01" + b"\x00" * 6
        server.sendto(header + query[12:end], client)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
