//! The radios' live level meters by name, shared by the gateway (each radio's codec engine
//! writes its own) and whoever reads them (the status API's `levels:NAME` room, `monitor
//! --levels`, the dashboard).

use crate::audio::meter::LiveMeter;
use crate::sync::lock;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// Radio name -> its [`LiveMeter`]. Cheap to clone (one shared map). The caller makes one,
/// gives it to the gateway in [`RunOptions::meters`](super::RunOptions::meters) and keeps a
/// clone for the readers; a radio's engine writes to `meter(NAME)` from the moment the radio
/// starts (a radio waiting for its hardware, from when its devices open). A reader may ask
/// for a radio's meter before the radio starts, and gets the one the engine will write: the
/// same meter stays the radio's across a hardware retry and a reload that keeps this map.
///
/// The lock is taken only to look a name up (a reader at a few hertz, a radio at its
/// start), never by the engine per frame.
#[derive(Debug, Clone, Default)]
pub struct Meters {
    map: Arc<Mutex<BTreeMap<String, Arc<LiveMeter>>>>,
}

impl Meters {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// The meter of `radio`, made on first use.
    pub fn meter(&self, radio: &str) -> Arc<LiveMeter> {
        let mut map = lock(&self.map);
        if let Some(m) = map.get(radio) {
            return m.clone();
        }
        let m = Arc::new(LiveMeter::new());
        map.insert(radio.to_string(), m.clone());
        m
    }

    /// The meter of `radio`, if one was made (the radio started, or someone asked).
    pub fn get(&self, radio: &str) -> Option<Arc<LiveMeter>> {
        lock(&self.map).get(radio).cloned()
    }

    /// The names with a meter, in order.
    pub fn names(&self) -> Vec<String> {
        lock(&self.map).keys().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::meter::{Levels, MeterDirection};

    #[test]
    fn one_meter_per_name_shared_by_every_clone() {
        let meters = Meters::new();
        assert!(meters.get("vhf1").is_none());
        let reader = meters.clone();
        let early = reader.meter("vhf1");
        let engine_side = meters.meter("vhf1");
        assert!(Arc::ptr_eq(&early, &engine_side));
        engine_side.record(
            MeterDirection::Receive,
            &Levels::measure(&[1000; 160]),
            true,
            None,
        );
        assert_eq!(
            reader
                .get("vhf1")
                .unwrap()
                .read(MeterDirection::Receive)
                .frames,
            1
        );
        let _guard = early.want();
        assert!(engine_side.is_wanted());
        meters.meter("uhf2");
        assert_eq!(reader.names(), ["uhf2", "vhf1"]);
        assert!(!reader.get("uhf2").unwrap().is_wanted());
    }
}
