//! The batch encoding of `wasp:plugin/types.batch`, read without copying and written into
//! three flat vectors.

/// The length that marks an absent key or value.
pub(crate) const ABSENT: u32 = u32::MAX;
/// In an output, the length that marks a field as the input record's, unchanged.
pub(crate) const UNCHANGED: u32 = u32::MAX - 1;
/// `u32`s per record in `batch.index`.
pub(crate) const INDEX_STRIDE: usize = 6;

/// A read-only view over an encoded batch.
#[derive(Clone, Copy)]
pub struct BatchView<'a> {
    index: &'a [u32],
    timestamps: &'a [i64],
    data: &'a [u8],
}

/// One record of a batch, borrowing from it.
#[derive(Clone, Copy, Debug)]
pub struct Record<'a> {
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
    /// Event time, milliseconds since the Unix epoch.
    pub timestamp: i64,
    headers: &'a [u8],
}

/// One record header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header<'a> {
    pub name: &'a str,
    pub value: Option<&'a [u8]>,
}

impl<'a> BatchView<'a> {
    /// A view over the three lists. A malformed batch (the host never sends one) yields
    /// absent fields rather than a panic.
    pub fn new(index: &'a [u32], timestamps: &'a [i64], data: &'a [u8]) -> Self {
        Self { index, timestamps, data }
    }

    pub fn len(&self) -> usize {
        self.timestamps.len().min(self.index.len() / INDEX_STRIDE)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn slice(&self, off: u32, len: u32) -> Option<&'a [u8]> {
        if len == ABSENT {
            return None;
        }
        let start = off as usize;
        self.data.get(start..start.checked_add(len as usize)?)
    }

    /// The record at `i`. Panics if `i >= len()`.
    pub fn get(&self, i: usize) -> Record<'a> {
        let h = &self.index[i * INDEX_STRIDE..(i + 1) * INDEX_STRIDE];
        Record {
            key: self.slice(h[0], h[1]),
            value: self.slice(h[2], h[3]),
            timestamp: self.timestamps[i],
            headers: self.slice(h[4], h[5]).unwrap_or(&[]),
        }
    }

    pub fn iter(&self) -> impl ExactSizeIterator<Item = Record<'a>> + '_ {
        (0..self.len()).map(|i| self.get(i))
    }
}

impl<'a> Record<'a> {
    /// The record's headers, in order.
    pub fn headers(&self) -> impl Iterator<Item = Header<'a>> {
        HeaderIter { rest: self.headers, left: read_u32(self.headers, 0).unwrap_or(0), pos: 4 }
    }
}

fn read_u32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

struct HeaderIter<'a> {
    rest: &'a [u8],
    left: u32,
    pos: usize,
}

impl<'a> Iterator for HeaderIter<'a> {
    type Item = Header<'a>;
    fn next(&mut self) -> Option<Header<'a>> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let name_len = read_u32(self.rest, self.pos)? as usize;
        let name = self.rest.get(self.pos + 4..self.pos + 4 + name_len)?;
        self.pos += 4 + name_len;
        let value_len = read_u32(self.rest, self.pos)?;
        self.pos += 4;
        let value = if value_len == ABSENT {
            None
        } else {
            let v = self.rest.get(self.pos..self.pos + value_len as usize)?;
            self.pos += value_len as usize;
            Some(v)
        };
        Some(Header { name: core::str::from_utf8(name).ok()?, value })
    }
}

/// Builds the `output` of a transforming function.
#[derive(Default)]
pub struct BatchBuilder {
    pub index: Vec<u32>,
    pub timestamps: Vec<i64>,
    pub data: Vec<u8>,
    pub origins: Vec<u32>,
    /// `(input position, code, message)` for each failed record.
    pub errors: Vec<(u32, String, String)>,
}

impl BatchBuilder {
    /// A builder sized for about `records` outputs of `bytes` bytes in all.
    pub fn with_capacity(records: usize, bytes: usize) -> Self {
        Self {
            index: Vec::with_capacity(records * INDEX_STRIDE),
            timestamps: Vec::with_capacity(records),
            data: Vec::with_capacity(bytes),
            origins: Vec::with_capacity(records),
            errors: Vec::new(),
        }
    }

    /// Starts a field: returns its offset for the index.
    fn mark(&self) -> u32 {
        self.data.len() as u32
    }

    /// Appends one record. `key` and `value` write their bytes into the buffer and say
    /// whether they are present.
    pub fn push(
        &mut self,
        origin: u32,
        timestamp: i64,
        key: impl FnOnce(&mut Vec<u8>) -> Result<bool, crate::RecordError>,
        value: impl FnOnce(&mut Vec<u8>) -> Result<bool, crate::RecordError>,
    ) -> Result<(), crate::RecordError> {
        let rollback = self.data.len();
        let k_off = self.mark();
        let k_present = key(&mut self.data).inspect_err(|_| self.data.truncate(rollback))?;
        let k_len = if k_present { self.data.len() as u32 - k_off } else { ABSENT };
        let v_off = self.mark();
        let v_present = value(&mut self.data).inspect_err(|_| self.data.truncate(rollback))?;
        let v_len = if v_present { self.data.len() as u32 - v_off } else { ABSENT };
        self.index.extend_from_slice(&[k_off, k_len, v_off, v_len, 0, 0]);
        self.timestamps.push(timestamp);
        self.origins.push(origin);
        Ok(())
    }

    /// Appends one record of a value mapper: its value is `produced`. When that is the input
    /// value itself (the same bytes, borrowed), the index marks it unchanged instead of
    /// copying it back.
    pub fn push_value(
        &mut self,
        origin: u32,
        timestamp: i64,
        input: Option<&[u8]>,
        produced: impl crate::IntoBytes,
    ) -> Result<(), crate::RecordError> {
        let same = match (produced.borrowed(), input) {
            (Some(Some(p)), Some(i)) => core::ptr::eq(p, i),
            (Some(None), None) => true,
            _ => false,
        };
        if !same {
            return self.push(origin, timestamp, |_| Ok(false), |b| produced.write_to(b));
        }
        self.index.extend_from_slice(&[0, ABSENT, 0, UNCHANGED, 0, 0]);
        self.timestamps.push(timestamp);
        self.origins.push(origin);
        Ok(())
    }

    /// Where the builder stands now, to undo a record that failed half-way.
    pub fn checkpoint(&self) -> (usize, usize) {
        (self.timestamps.len(), self.data.len())
    }

    /// Drops every record pushed since `checkpoint`.
    pub fn rollback(&mut self, (records, bytes): (usize, usize)) {
        self.index.truncate(records * INDEX_STRIDE);
        self.timestamps.truncate(records);
        self.origins.truncate(records);
        self.data.truncate(bytes);
    }

    /// Before the output is returned: leaves out what the host can infer, so less crosses
    /// back. `origins` is dropped when the outputs are the inputs one for one, in order, and
    /// `timestamps` when every output has its input's timestamp (see `output` in the WIT).
    pub fn compact(&mut self, input_timestamps: &[i64]) {
        let in_order = self.errors.is_empty()
            && self.origins.len() == input_timestamps.len()
            && self.origins.iter().enumerate().all(|(i, &o)| o as usize == i);
        let inherited =
            self.origins.iter().zip(&self.timestamps).all(|(&o, t)| input_timestamps.get(o as usize) == Some(t));
        if inherited {
            self.timestamps = Vec::new();
        }
        if in_order {
            self.origins = Vec::new();
        }
    }

    /// Records that the input at `origin` failed.
    pub fn fail(&mut self, origin: u32, error: crate::RecordError) {
        self.errors.push((origin, error.code, error.message));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_through_builder_and_view() {
        let mut b = BatchBuilder::default();
        b.push(
            0,
            7,
            |k| {
                Ok({
                    k.extend_from_slice(b"k1");
                    true
                })
            },
            |v| {
                Ok({
                    v.extend_from_slice(b"v1");
                    true
                })
            },
        )
        .unwrap();
        b.push(1, 8, |_| Ok(false), |_| Ok(false)).unwrap();
        let view = BatchView::new(&b.index, &b.timestamps, &b.data);
        assert_eq!(view.len(), 2);
        let r0 = view.get(0);
        assert_eq!((r0.key, r0.value, r0.timestamp), (Some(&b"k1"[..]), Some(&b"v1"[..]), 7));
        let r1 = view.get(1);
        assert_eq!((r1.key, r1.value, r1.timestamp), (None, None, 8));
        assert_eq!(b.origins, vec![0, 1]);
    }

    #[test]
    fn compact_leaves_out_origins_and_timestamps_the_host_can_infer() {
        let value = |v: &mut Vec<u8>| {
            v.push(1);
            Ok(true)
        };
        let mut b = BatchBuilder::default();
        b.push(0, 5, |_| Ok(false), value).unwrap();
        b.push(1, 6, |_| Ok(false), value).unwrap();
        b.compact(&[5, 6]);
        assert!(b.origins.is_empty() && b.timestamps.is_empty() && b.index.len() == 2 * INDEX_STRIDE);
        // Two outputs of the first input (a flatMap): origins stay, timestamps are inherited.
        let mut b = BatchBuilder::default();
        b.push(0, 5, |_| Ok(false), value).unwrap();
        b.push(0, 5, |_| Ok(false), value).unwrap();
        b.compact(&[5, 6]);
        assert_eq!((b.origins.as_slice(), b.timestamps.len()), (&[0, 0][..], 0));
        // A changed timestamp keeps the list.
        let mut b = BatchBuilder::default();
        b.push(0, 9, |_| Ok(false), value).unwrap();
        b.compact(&[5]);
        assert_eq!((b.origins.len(), b.timestamps.as_slice()), (0, &[9][..]));
    }

    #[test]
    fn a_failed_field_rolls_the_record_back() {
        let mut b = BatchBuilder::default();
        let r = b.push(
            0,
            1,
            |k| {
                Ok({
                    k.extend_from_slice(b"key");
                    true
                })
            },
            |_| Err(crate::RecordError::new("x", "y")),
        );
        assert!(r.is_err());
        assert!(b.data.is_empty() && b.index.is_empty() && b.timestamps.is_empty());
    }

    #[test]
    fn headers_decode_in_order() {
        let mut h = Vec::new();
        h.extend_from_slice(&2u32.to_le_bytes());
        for (name, value) in [("a", Some(&b"1"[..])), ("bb", None)] {
            h.extend_from_slice(&(name.len() as u32).to_le_bytes());
            h.extend_from_slice(name.as_bytes());
            match value {
                Some(v) => {
                    h.extend_from_slice(&(v.len() as u32).to_le_bytes());
                    h.extend_from_slice(v);
                }
                None => h.extend_from_slice(&ABSENT.to_le_bytes()),
            }
        }
        let index = [0, ABSENT, 0, ABSENT, 0, h.len() as u32];
        let view = BatchView::new(&index, &[0], &h);
        let got: Vec<_> = view.get(0).headers().collect();
        assert_eq!(got, vec![Header { name: "a", value: Some(b"1") }, Header { name: "bb", value: None }]);
    }
}
