"""Batch encoding helpers for Python plugins (componentize-py).

A batch is three flat lists (see wit/plugin.wit, `types.batch`): `index` holds six integers per
record (key offset, key length, value offset, value length, headers offset, headers length),
`timestamps` one integer per record, and `data` every key, value and header back to back.
A length of 0xFFFFFFFF means absent: a null key or a tombstone.
"""

ABSENT = 0xFFFFFFFF


def records(batch):
    """Yields (key, value, timestamp) per record; key and value are bytes or None."""
    data = batch.data
    index = batch.index
    for i, ts in enumerate(batch.timestamps):
        ko, kl, vo, vl = index[6 * i : 6 * i + 4]
        key = None if kl == ABSENT else data[ko : ko + kl]
        value = None if vl == ABSENT else data[vo : vo + vl]
        yield key, value, ts


class OutputBuilder:
    """Collects produced records and per-record errors for an `output`."""

    def __init__(self, types):
        self._types = types
        self.index = []
        self.timestamps = []
        self.data = bytearray()
        self.origins = []
        self.errors = []

    def _put(self, field):
        if field is None:
            return 0, ABSENT
        off = len(self.data)
        self.data += field
        return off, len(field)

    def push(self, origin, timestamp, key=None, value=None):
        ko, kl = self._put(key)
        vo, vl = self._put(value)
        self.index += [ko, kl, vo, vl, 0, 0]
        self.timestamps.append(timestamp)
        self.origins.append(origin)

    def fail(self, origin, code, message):
        self.errors.append(self._types.RecordError(index=origin, code=code, message=message))

    def build(self):
        t = self._types
        return t.Output(
            records=t.Batch(index=self.index, timestamps=self.timestamps, data=bytes(self.data)),
            origins=self.origins,
            errors=self.errors,
        )
