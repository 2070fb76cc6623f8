//! The counter table: every counter declared once, with its metadata.
//!
//! [`counter_table!`](crate::counter_table) declares a struct of plain
//! `u64` counters (scalars, or arrays split by one label) together with a
//! static table of [`CounterDesc`]: field name (the JSON key), Prometheus
//! metric name, help text, label name and values, kind, and the row label
//! of the text report. The struct implements [`CounterTable`], which walks
//! the fields in table order; adding two sets of counters, the JSON of
//! `/stats` and of `--final-stats`, the Prometheus exposition and the text
//! report are all written once over that walk, so a counter added to the
//! table appears everywhere without another line of code.
//!
//! No I/O and no dependency here: the table is plain `'static` data and
//! the walk hands out slices; the management crate turns them into text.

/// What a counter measures over time (its Prometheus `# TYPE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only ever grows (name ends with `_total`).
    Counter,
    /// Goes up and down.
    Gauge,
}

impl Kind {
    /// The Prometheus `# TYPE` word.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
        }
    }
}

/// The label that splits an array of counters into one series per element:
/// element `i` carries `name="values[i]"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Label {
    /// Label name (`reason`, `family`, `type`).
    pub name: &'static str,
    /// Label value of each element, in index order.
    pub values: &'static [&'static str],
}

/// One entry of a counter table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CounterDesc {
    /// The struct field, which is also the JSON key.
    pub name: &'static str,
    /// The Prometheus metric family.
    pub metric: &'static str,
    /// The Prometheus `# HELP` text.
    pub help: &'static str,
    /// The row label of the text report; `{}` stands for the label value.
    pub text: &'static str,
    /// Counter or gauge.
    pub kind: Kind,
    /// `None` for a scalar; the label of each element for an array.
    pub label: Option<Label>,
}

impl CounterDesc {
    /// Number of values: 1 for a scalar, the number of label values for an
    /// array.
    pub fn len(&self) -> usize {
        self.label.map_or(1, |l| l.values.len())
    }

    /// Never empty (a scalar has one value; an array has a label per element).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The text report's row label for element `i`.
    pub fn text_of(&self, i: usize) -> String {
        match self.label {
            None => self.text.to_string(),
            Some(l) => self.text.replace("{}", l.values[i]),
        }
    }
}

/// A struct of counters with its table ([`counter_table!`](crate::counter_table)
/// implements it).
pub trait CounterTable: Default {
    /// Every counter, in field order.
    const TABLE: &'static [CounterDesc];

    /// The values of counter `i` of [`TABLE`](Self::TABLE) (one for a
    /// scalar). Panics if `i` is out of range.
    fn values(&self, i: usize) -> &[u64];

    /// The values of counter `i`, mutable.
    fn values_mut(&mut self, i: usize) -> &mut [u64];

    /// Calls `f` with every counter's description and values, in table order.
    fn for_each(&self, mut f: impl FnMut(&'static CounterDesc, &[u64])) {
        for (i, d) in Self::TABLE.iter().enumerate() {
            f(d, self.values(i));
        }
    }

    /// Adds another set (aggregation across workers, queues or ports).
    fn add(&mut self, o: &Self) {
        for i in 0..Self::TABLE.len() {
            for (a, b) in self.values_mut(i).iter_mut().zip(o.values(i)) {
                *a += b;
            }
        }
    }

    /// The index in [`TABLE`](Self::TABLE) of the counter named `name`.
    fn index_of(name: &str) -> Option<usize> {
        Self::TABLE.iter().position(|d| d.name == name)
    }
}

/// A field of a counter struct seen as a slice: a scalar or an array.
pub trait Cells {
    /// The values.
    fn cells(&self) -> &[u64];
    /// The values, mutable.
    fn cells_mut(&mut self) -> &mut [u64];
}

impl Cells for u64 {
    #[inline]
    fn cells(&self) -> &[u64] {
        std::slice::from_ref(self)
    }
    #[inline]
    fn cells_mut(&mut self) -> &mut [u64] {
        std::slice::from_mut(self)
    }
}

impl<const N: usize> Cells for [u64; N] {
    #[inline]
    fn cells(&self) -> &[u64] {
        self
    }
    #[inline]
    fn cells_mut(&mut self) -> &mut [u64] {
        self
    }
}

/// Declares a struct of counters and its [`CounterTable`] in one place.
///
/// ```
/// mtugate_datapath::counter_table! {
///     /// Two counters.
///     #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
///     pub struct Demo {
///         /// Frames seen.
///         frames: u64 {
///             metric: "demo_frames_total",
///             help: "Frames seen.",
///             text: "frames",
///         },
///         /// Frames by family.
///         by_family: [u64; 2] {
///             metric: "demo_family_frames_total",
///             help: "Frames by address family.",
///             text: "frames {}",
///             label: ("family", &["ipv4", "ipv6"]),
///         },
///     }
/// }
/// use mtugate_datapath::counters::CounterTable;
/// let mut d = Demo::default();
/// d.by_family[1] = 3;
/// assert_eq!(Demo::TABLE[1].metric, "demo_family_frames_total");
/// assert_eq!(d.values(1), &[0, 3]);
/// ```
///
/// Each field: doc comments, `name: type { metric, help, text[, label][, kind] }`
/// where `type` is `u64` or `[u64; N]` (then `label: (name, &values)` with
/// N values is required — checked by [`check`]) and `kind` is `Counter`
/// (the default) or `Gauge`.
#[macro_export]
macro_rules! counter_table {
    (
        $(#[$meta:meta])*
        $vis:vis struct $name:ident {
            $(
                $(#[doc = $doc:literal])*
                $field:ident : $ty:ty {
                    metric: $metric:literal,
                    help: $help:literal,
                    text: $text:literal,
                    $(label: ($lname:literal, $lvalues:expr),)?
                    $(kind: $kind:ident,)?
                }
            ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        $vis struct $name {
            $(
                $(#[doc = $doc])*
                pub $field: $ty,
            )*
        }

        impl $crate::counters::CounterTable for $name {
            const TABLE: &'static [$crate::counters::CounterDesc] = &[
                $(
                    $crate::counters::CounterDesc {
                        name: stringify!($field),
                        metric: $metric,
                        help: $help,
                        text: $text,
                        kind: $crate::counter_table!(@kind $($kind)?),
                        label: $crate::counter_table!(@label $($lname, $lvalues)?),
                    },
                )*
            ];

            #[inline]
            fn values(&self, i: usize) -> &[u64] {
                const GET: &[fn(&$name) -> &[u64]] =
                    &[$(|c| $crate::counters::Cells::cells(&c.$field)),*];
                GET[i](self)
            }

            #[inline]
            fn values_mut(&mut self, i: usize) -> &mut [u64] {
                const GET: &[fn(&mut $name) -> &mut [u64]] =
                    &[$(|c| $crate::counters::Cells::cells_mut(&mut c.$field)),*];
                GET[i](self)
            }
        }
    };
    (@kind) => { $crate::counters::Kind::Counter };
    (@kind $kind:ident) => { $crate::counters::Kind::$kind };
    (@label) => { None };
    (@label $lname:literal, $lvalues:expr) => {
        Some($crate::counters::Label {
            name: $lname,
            values: $lvalues,
        })
    };
}

/// Whether a table is consistent: unique field and metric names, and as
/// many label values as values (one for a scalar). Meant for tests.
pub fn check<T: CounterTable>() -> Result<(), String> {
    let t = T::default();
    for (i, d) in T::TABLE.iter().enumerate() {
        if t.values(i).len() != d.len() {
            return Err(format!(
                "{}: {} values, {} label values",
                d.name,
                t.values(i).len(),
                d.len()
            ));
        }
        if d.label.is_some() != d.text.contains("{}") {
            return Err(format!("{}: text {:?} and label disagree", d.name, d.text));
        }
        for e in &T::TABLE[..i] {
            if e.name == d.name || e.metric == d.metric {
                return Err(format!("{} and {} share a name", e.name, d.name));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::{Counters, DropReason};

    #[test]
    fn pipeline_table_is_consistent() {
        check::<Counters>().unwrap();
        for d in Counters::TABLE {
            assert!(d.metric.starts_with("mtugate_"), "{}", d.metric);
            assert_eq!(d.kind == Kind::Counter, d.metric.ends_with("_total"));
        }
        let drops = &Counters::TABLE[Counters::index_of("drops").unwrap()];
        let l = drops.label.unwrap();
        assert_eq!(l.name, "reason");
        for r in DropReason::ALL {
            assert_eq!(l.values[r as usize], r.name());
        }
        assert_eq!(
            drops.text_of(DropReason::TooBig as usize),
            "dropped: too_big"
        );
    }

    #[test]
    fn walk_and_add_cover_every_value() {
        // Every value a distinct number, then added to itself: each doubles.
        let mut c = Counters::default();
        let mut n = 0;
        for i in 0..Counters::TABLE.len() {
            for v in c.values_mut(i) {
                n += 1;
                *v = n;
            }
        }
        let total: usize = Counters::TABLE.iter().map(CounterDesc::len).sum();
        assert_eq!(n as usize, total);
        assert_eq!(
            size_of::<Counters>(),
            total * 8,
            "a field of Counters is missing from its table"
        );
        let mut d = c;
        d.add(&c);
        let mut seen = 0;
        let mut k = 0;
        d.for_each(|_, vs| {
            for v in vs {
                k += 1;
                assert_eq!(*v, 2 * k);
                seen += 1;
            }
        });
        assert_eq!(seen, total);
        assert_eq!(d.rx_packets, 2);
        assert_eq!(d.drops[DropReason::COUNT - 1], 2 * n);
    }
}
