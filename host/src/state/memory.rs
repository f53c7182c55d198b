//! The in-memory backend: a sorted map. Its contents live as long as the task; a restart
//! restores them from the changelog.

use std::collections::BTreeMap;

use super::{Backend, Entries, Progress};

#[derive(Default)]
pub struct MemoryBackend {
    entries: BTreeMap<Vec<u8>, Vec<u8>>,
    progress: Option<Progress>,
}

impl Backend for MemoryBackend {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, String> {
        Ok(self.entries.get(key).cloned())
    }

    fn get_into(&self, key: &[u8], out: &mut Vec<u8>) -> Result<bool, String> {
        Ok(self.entries.get(key).map(|v| out.extend_from_slice(v)).is_some())
    }

    fn range(&self, from: &[u8], to: Option<&[u8]>, limit: usize, max_bytes: usize) -> Result<Entries, String> {
        let upper = match to {
            Some(t) => std::ops::Bound::Excluded(t.to_vec()),
            None => std::ops::Bound::Unbounded,
        };
        let mut bytes = 0usize;
        Ok(self
            .entries
            .range((std::ops::Bound::Included(from.to_vec()), upper))
            .take(limit)
            .take_while(|(k, v)| {
                let within = bytes < max_bytes;
                bytes = bytes.saturating_add(k.len() + v.len());
                within
            })
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }

    fn write(&mut self, writes: &BTreeMap<Vec<u8>, Option<Vec<u8>>>, progress: &Progress) -> Result<(), String> {
        for (k, v) in writes {
            match v {
                Some(v) => self.entries.insert(k.clone(), v.clone()),
                None => self.entries.remove(k),
            };
        }
        self.progress = Some(progress.clone());
        Ok(())
    }

    fn progress(&self) -> Result<Option<Progress>, String> {
        Ok(self.progress.clone())
    }

    fn clear(&mut self) -> Result<(), String> {
        self.entries.clear();
        self.progress = None;
        Ok(())
    }
}
