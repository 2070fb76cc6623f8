//! The counter tables ([`CounterTable`]) as JSON: a scalar counter is
//! `"name": n`, an array is `"name": {"label value": n, ...}`, under the
//! field names of the table. Every document that carries counters
//! (`/stats`, `--final-stats`) writes and reads them through here.

use mtugate_datapath::counters::{CounterTable, Label};
use serde::de::{Error, MapAccess};
use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};
use std::collections::BTreeMap;

/// The values of one array counter, as a JSON object keyed by label value.
struct Labelled<'a>(Label, &'a [u64]);

impl Serialize for Labelled<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.1.len()))?;
        for (k, v) in self.0.values.iter().zip(self.1) {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

/// Writes every counter of `t` into the map `m`, each key prefixed with
/// `prefix`.
pub(crate) fn serialize_entries<T: CounterTable, M: SerializeMap>(
    t: &T,
    prefix: &str,
    m: &mut M,
) -> Result<(), M::Error> {
    for (i, d) in T::TABLE.iter().enumerate() {
        let key = format!("{prefix}{}", d.name);
        match d.label {
            None => m.serialize_entry(&key, &t.values(i)[0])?,
            Some(l) => m.serialize_entry(&key, &Labelled(l, t.values(i)))?,
        }
    }
    Ok(())
}

/// Reads the value of `key` into `t` if it names one of `t`'s counters
/// (then marks it in `seen`, indexed like the table); returns false, the
/// value left unread, otherwise. An array must have a value for each of
/// its label values, and no other.
pub(crate) fn deserialize_entry<'de, T: CounterTable, A: MapAccess<'de>>(
    t: &mut T,
    seen: &mut [bool],
    key: &str,
    m: &mut A,
) -> Result<bool, A::Error> {
    let Some(i) = T::index_of(key) else {
        return Ok(false);
    };
    if std::mem::replace(&mut seen[i], true) {
        return Err(A::Error::duplicate_field(T::TABLE[i].name));
    }
    match T::TABLE[i].label {
        None => t.values_mut(i)[0] = m.next_value()?,
        Some(l) => {
            let got: BTreeMap<String, u64> = m.next_value()?;
            if got.len() != l.values.len() {
                return Err(A::Error::custom(format!(
                    "{key}: {} values, want one per {} ({})",
                    got.len(),
                    l.name,
                    l.values.join(", ")
                )));
            }
            for (k, v) in got {
                let Some(j) = l.values.iter().position(|x| *x == k) else {
                    return Err(A::Error::custom(format!("{key}: unknown {} {k:?}", l.name)));
                };
                t.values_mut(i)[j] = v;
            }
        }
    }
    Ok(true)
}

/// Fails with the first counter of the table not in `seen`.
pub(crate) fn all_seen<T: CounterTable, E: Error>(seen: &[bool]) -> Result<(), E> {
    match seen.iter().position(|s| !s) {
        Some(i) => Err(E::missing_field(T::TABLE[i].name)),
        None => Ok(()),
    }
}
