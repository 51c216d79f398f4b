"""L3: Redis / Valkey / Dragonfly through redis-py: pipelined MGET / SET EX under a key prefix,
with connect and command timeouts. Values are decimal integers or JSON text, parsed strictly."""

from __future__ import annotations


class RedisTier:
    name = "l3"

    def __init__(self, url: str, prefix: str = "omnitok:v1:", ttl: int | None = 7 * 86400, timeout: float = 2.0):
        import redis

        self.prefix = prefix
        self.ttl = ttl
        self.client = redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)
        self.client.ping()  # fail now, not on the first batch

    def _k(self, key: str) -> str:
        return self.prefix + key

    def get_many(self, keys: list[str]) -> list[object | None]:
        if not keys:
            return []
        return list(self.client.mget([self._k(k) for k in keys]))

    def set_many(self, items: dict[str, object]) -> None:
        pipe = self.client.pipeline(transaction=False)
        for key, value in items.items():
            pipe.set(self._k(key), str(value) if isinstance(value, int) else value, ex=self.ttl)
        pipe.execute()

    def size(self) -> int:
        return sum(1 for _ in self.client.scan_iter(match=self.prefix + "*", count=1000))

    def clear(self, tag: str | None = None) -> int:
        pattern = self.prefix + (f"{tag}:*" if tag else "*")
        n = 0
        batch = []
        for key in self.client.scan_iter(match=pattern, count=1000):
            if key.endswith(b"stats") and tag is None:
                continue
            batch.append(key)
            if len(batch) >= 1000:
                n += self.client.delete(*batch)
                batch = []
        if batch:
            n += self.client.delete(*batch)
        return n

    def incr_stats(self, counts: dict[str, int]) -> None:
        pipe = self.client.pipeline(transaction=False)
        for field, value in counts.items():
            if value:
                pipe.hincrby(self.prefix + "stats", field, value)
        pipe.execute()

    def stored_stats(self) -> dict[str, int]:
        raw = self.client.hgetall(self.prefix + "stats")
        return {k.decode(): int(v) for k, v in raw.items()}

    def close(self) -> None:
        self.client.close()
