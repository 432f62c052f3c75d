"""`redis+cluster://` URLs: the seed nodes, and a one-node URL carrying the credentials, TLS
and options for redis-py to read."""

from __future__ import annotations

import pytest

from gateway.store.factory import open_store
from gateway.store.redis import RedisStore
from gateway.store.redis_url import ClusterURL, is_cluster, parse_cluster_url


def test_the_nodes_and_the_rest_of_the_url() -> None:
    assert parse_cluster_url("redis+cluster://:pw@10.0.0.1:7000, 10.0.0.2:7001/0") == ClusterURL(
        (("10.0.0.1", 7000), ("10.0.0.2", 7001)), "redis://:pw@10.0.0.1:7000/0"
    )
    assert parse_cluster_url("rediss+cluster://u:p@[::1]:7000?ssl_cert_reqs=none") == ClusterURL(
        (("::1", 7000),), "rediss://u:p@[::1]:7000/0?ssl_cert_reqs=none"
    )
    # A password with an @ in it, unencoded: the host list starts after the last one.
    assert parse_cluster_url("redis+cluster://:p@ss@h:1").nodes == (("h", 1),)


@pytest.mark.parametrize(
    "url", ["redis+cluster://h", "redis+cluster://h:x", "redis+cluster://:1", "redis+cluster://h:0"]
)
def test_a_node_needs_a_host_and_a_port(url: str) -> None:
    with pytest.raises(ValueError, match="host:port"):
        parse_cluster_url(url)


def test_a_cluster_has_only_database_0() -> None:
    with pytest.raises(ValueError, match="only database 0"):
        parse_cluster_url("redis+cluster://h:1/1")


def test_only_the_cluster_schemes_mean_a_cluster() -> None:
    assert is_cluster("redis+cluster://h:1") and is_cluster("rediss+cluster://h:1")
    assert not is_cluster("redis://h:1/0") and not is_cluster("rediss://h:1/0")


async def test_the_factory_opens_a_cluster_store_for_a_cluster_url() -> None:
    # Nothing connects before the first command.
    cluster, single = open_store("redis+cluster://h:1"), open_store("redis://h:1/0")
    assert isinstance(cluster, RedisStore) and cluster.cluster
    assert isinstance(single, RedisStore) and not single.cluster
    await cluster.aclose()
    await single.aclose()
