"""L3: Redis / Valkey / Dragonfly through redis-py: batched bounded reads and pipelined SET EX under
a key prefix, with connect and command timeouts.

Whatever the server holds is untrusted: a value longer than the reader's bound never crosses the
wire (a server-side script replaces it with a marker, read as UNREADABLE, as is a key of another
type), and the statistics hash is read field by field and parsed strictly by the
caller. Where scripting is refused, GETRANGE per key (pipelined) keeps the same bound."""

from __future__ import annotations

# MGET in batches of 1,000 (Lua's unpack limit), each value longer than ARGV[1] bytes replaced by a
# marker: one round trip, nearly MGET's speed (measured 4.1 vs 3.2 us a key in batches of 1,000).
_BOUNDED_MGET = """
local out = {}
local limit = tonumber(ARGV[1])
for i = 1, #KEYS, 1000 do
  local values = redis.call('MGET', unpack(KEYS, i, math.min(i + 999, #KEYS)))
  for j = 1, #values do
    local v = values[j]
    if v and #v > limit then
      v = '\\0unreadable'
    elseif not v and redis.call('EXISTS', KEYS[i + j - 1]) == 1 then
      v = '\\0unreadable'  -- a key of another type
    end
    out[i + j - 1] = v
  end
end
return out
"""
_MARKER = b"\0unreadable"


class Unreadable:
    """A value larger than the reader's bound, or a key of another type: never decoded."""

    def __repr__(self) -> str:
        return "<value too large or not a string>"


UNREADABLE = Unreadable()


def connection_url(url: str) -> str:
    """redis-py speaks redis://, rediss:// and unix://; valkey:// and valkeys:// are the same
    protocol."""
    scheme, sep, rest = url.partition("://")
    mapped = {"valkey": "redis", "valkeys": "rediss"}.get(scheme.lower(), scheme.lower())
    return f"{mapped}{sep}{rest}"


class RedisTier:
    name = "l3"

    def __init__(self, url: str, prefix: str = "omnitok:v1:", ttl: int | None = 7 * 86400, timeout: float = 2.0):
        import redis

        self.prefix = prefix
        self.ttl = ttl
        self.client = redis.Redis.from_url(connection_url(url), socket_connect_timeout=timeout, socket_timeout=timeout)
        self.client.ping()  # fail now, not on the first batch
        self._script = self.client.register_script(_BOUNDED_MGET)
        self.scripting = True

    def _k(self, key: str) -> str:
        return self.prefix + key

    def get_many(self, keys: list[str], limit: int) -> list[object | None]:
        """Values (bytes) for keys, None for a miss, UNREADABLE for a value over `limit` bytes or
        a key of another type."""
        if not keys:
            return []
        names = [self._k(k) for k in keys]
        raw = None
        if self.scripting:
            import redis

            try:
                raw = self._script(keys=names, args=[limit])
            except redis.exceptions.ResponseError:  # scripting disabled or not allowed: per key
                self.scripting = False
        if raw is None:
            pipe = self.client.pipeline(transaction=False)
            for name in names:
                pipe.getrange(name, 0, limit)
            raw = [_MARKER if isinstance(v, Exception) else (v or None) for v in pipe.execute(False)]
        if not isinstance(raw, list) or len(raw) != len(keys):
            raise ValueError("the server answered a batch read with something else")
        return [UNREADABLE if v is not None and (v == _MARKER or len(v) > limit) else v for v in raw]

    def set_many(self, items: dict[str, object], limit: int) -> int:
        """Store items (ints as decimal text); values over `limit` bytes are left out (they could
        never be read back). Returns how many were stored."""
        pipe = self.client.pipeline(transaction=False)
        n = 0
        for key, value in items.items():
            data = str(value) if isinstance(value, int) else value
            if len(data) > limit:
                continue
            pipe.set(self._k(key), data, ex=self.ttl)
            n += 1
        pipe.execute()
        return n

    def size(self) -> int:
        """Cached entries under the prefix (the statistics hash is not one, as in L2)."""
        stats = (self.prefix + "stats").encode()
        return sum(key != stats for key in self.client.scan_iter(match=self.prefix + "*", count=1000))

    def clear(self, tag: str | None = None) -> int:
        pattern = self.prefix + (f"{tag}:*" if tag else "*")
        stats = (self.prefix + "stats").encode()
        n = 0
        batch = []
        for key in self.client.scan_iter(match=pattern, count=1000):
            if key == stats and tag is None:
                continue
            batch.append(key)
            if len(batch) >= 1000:
                n += self.client.delete(*batch)
                batch = []
        if batch:
            n += self.client.delete(*batch)
        return n

    def incr_stats(self, counts: dict[str, int]) -> bool:
        """Add this run's counts to the statistics hash. False if the stored hash was damaged (of
        another type, or a field that is not an integer) and was started afresh."""
        import redis

        def add():
            pipe = self.client.pipeline(transaction=False)
            for field, value in counts.items():
                if value:
                    pipe.hincrby(self.prefix + "stats", field, value)
            pipe.execute()

        try:
            add()
            return True
        except redis.exceptions.ResponseError:
            self.client.delete(self.prefix + "stats")
            add()
            return False

    def stored_stats(self, fields) -> list:
        """The raw stored values of `fields` (bytes or None); ValueError if the statistics key
        holds another type."""
        import redis

        try:
            return list(self.client.hmget(self.prefix + "stats", list(fields)))
        except redis.exceptions.ResponseError as e:
            raise ValueError(f"the statistics at {self.prefix}stats are not a hash ({e})") from None

    def close(self) -> None:
        self.client.close()
