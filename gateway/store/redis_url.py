"""The Redis `store:` URLs, read without connecting (the config check uses this too).

- `redis://[[user]:password@]host[:port][/db][?option=value…]`, `rediss://` for TLS: one
  Redis server (redis-py reads the URL).
- `redis+cluster://[[user]:password@]host:port[,host:port…][/0][?option=value…]`,
  `rediss+cluster://` for TLS: a Redis Cluster. The nodes listed are where the client starts
  to discover the cluster: one is enough, several keep a node that is down at start from
  mattering. A cluster has only database 0. The query options are redis-py's URL options,
  as for `redis://`.

redis-py's own cluster URL takes one node and no marker that it is a cluster, so a plain
`redis://` URL never silently means a cluster, nor the reverse.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

CLUSTER_SCHEMES = ("redis+cluster://", "rediss+cluster://")
_NETLOC = re.compile(r"^([^/?#]*)([^#]*)")


@dataclass(frozen=True)
class ClusterURL:
    nodes: tuple[tuple[str, int], ...]
    # The same credentials, TLS and options as a plain one-node URL, for redis-py to read.
    single: str


def is_cluster(url: str) -> bool:
    return url.startswith(CLUSTER_SCHEMES)


def parse_cluster_url(url: str) -> ClusterURL:
    """Split a `redis+cluster://` URL into its seed nodes and a one-node URL. Raises
    ValueError naming what is wrong (never echoing the URL: it may hold a password)."""
    scheme, _, rest = url.partition("://")
    match = _NETLOC.match(rest)
    netloc, tail = match.groups() if match else ("", "")
    userinfo, at, hosts = netloc.rpartition("@")
    nodes: list[tuple[str, int]] = []
    for part in hosts.split(","):
        host, colon, port = part.strip().rpartition(":")
        if not (colon and host and port.isdigit() and 0 < int(port) < 65536):
            raise ValueError(
                "a Redis Cluster URL lists its nodes as host:port, separated by commas "
                "(redis+cluster://host1:7000,host2:7001)"
            )
        nodes.append((host.removeprefix("[").removesuffix("]"), int(port)))
    path, _, query = tail.partition("?")
    if path not in ("", "/", "/0"):
        raise ValueError("a Redis Cluster has only database 0 (end the URL with /0 or nothing)")
    plain = scheme.removesuffix("+cluster")
    first = hosts.split(",")[0].strip()
    single = f"{plain}://{userinfo}{at}{first}/0" + (f"?{query}" if query else "")
    return ClusterURL(tuple(nodes), single)
