//! What the agent keeps of a series across restarts, in the store's
//! `model_state` table under `forecast/{host}/{workload}/{resource}`.
//!
//! | version | blob |
//! | --- | --- |
//! | 1 | the forecaster's own bytes ([`SeriesForecaster::to_bytes`], whose first byte is its [`STATE_VERSION`]) |
//! | 2 | postcard of [`SavedSeries`]: the forecaster's bytes, and the series' anomaly detector (so that a leak or a level shift under way is still seen after a restart) |
//!
//! Version 1 is what agents before version 2 wrote; it still loads (with a
//! fresh anomaly detector). The forecaster's bytes carry their own version,
//! so a change of the forecaster's format needs no new version here.

use prescient_core::SeriesKey;
use prescient_forecast::anomaly::SeriesAnomalyDetector;
use prescient_forecast::{STATE_VERSION, SeriesForecaster};
use serde::{Deserialize, Serialize};

/// The store key a series' state is saved under.
pub fn state_key(key: &SeriesKey) -> String {
    format!(
        "forecast/{}/{}/{}",
        key.host,
        key.workload,
        key.resource.as_str()
    )
}

/// The version [`encode`] writes.
pub const SERIES_STATE_VERSION: u32 = 2;

/// The forecaster's bytes alone (agents before version 2).
pub const FORECASTER_ONLY_VERSION: u32 = 1;

/// A series as saved: see the module documentation.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SavedSeries {
    /// [`SeriesForecaster::to_bytes`].
    pub forecaster: Vec<u8>,
    /// The anomaly detectors' state.
    pub detector: SeriesAnomalyDetector,
}

/// Why a saved series could not be read.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PersistError {
    /// A version this build does not read.
    #[error(
        "saved series state has version {found}; this build reads versions {FORECASTER_ONLY_VERSION} and {SERIES_STATE_VERSION}"
    )]
    UnknownVersion {
        /// The version found.
        found: u32,
    },
    /// The blob does not decode.
    #[error("saved series state (version {version}) does not decode: {reason}")]
    Corrupt {
        /// Its version.
        version: u32,
        /// What is wrong.
        reason: String,
    },
    /// The forecaster inside does not load.
    #[error(transparent)]
    Forecaster(#[from] prescient_forecast::StateError),
}

/// The blob and version to save for a series.
pub fn encode(forecaster: &SeriesForecaster, detector: &SeriesAnomalyDetector) -> (u32, Vec<u8>) {
    let saved = SavedSeries {
        forecaster: forecaster.to_bytes(),
        detector: detector.clone(),
    };
    // Plain structs, vectors and numbers into a Vec: cannot fail.
    (
        SERIES_STATE_VERSION,
        postcard::to_stdvec(&saved).unwrap_or_default(),
    )
}

/// Reads back what [`encode`] (or an agent before it) saved: the forecaster,
/// and the anomaly detector when the version has one.
pub fn decode(
    version: u32,
    blob: &[u8],
) -> Result<(SeriesForecaster, Option<SeriesAnomalyDetector>), PersistError> {
    match version {
        FORECASTER_ONLY_VERSION => Ok((SeriesForecaster::from_bytes(blob)?, None)),
        SERIES_STATE_VERSION => {
            let saved: SavedSeries =
                postcard::from_bytes(blob).map_err(|e| PersistError::Corrupt {
                    version,
                    reason: e.to_string(),
                })?;
            Ok((
                SeriesForecaster::from_bytes(&saved.forecaster)?,
                Some(saved.detector),
            ))
        }
        found => Err(PersistError::UnknownVersion { found }),
    }
}

// Version 1 blobs are the forecaster's own bytes: they start with its
// format version, which must be the one version 1 agents wrote.
const _: () = assert!(STATE_VERSION == 1);

#[cfg(test)]
mod tests {
    use super::*;
    use prescient_core::Resource;
    use prescient_forecast::SeriesContext;
    use prescient_forecast::anomaly::AnomalyConfig;

    fn trained() -> (SeriesForecaster, SeriesAnomalyDetector) {
        let mut f = SeriesForecaster::new(
            SeriesContext {
                step_ms: 60_000,
                resource: Resource::Memory,
            },
            &[],
        );
        let mut d = SeriesAnomalyDetector::new(Resource::Memory, &AnomalyConfig::default());
        let key = SeriesKey::new("h", "w", Resource::Memory);
        for t in 0..500i64 {
            let v = 1e9 + (t % 13) as f64 * 1e6;
            let verdict = d.observe(&key, t * 60_000, v, None);
            f.observe(t * 60_000, verdict.learn);
        }
        (f, d)
    }

    #[test]
    fn both_versions_load_and_others_are_refused_by_name() {
        let (f, d) = trained();
        let (v, blob) = encode(&f, &d);
        assert_eq!(v, SERIES_STATE_VERSION);
        let (f2, d2) = decode(v, &blob).unwrap();
        assert!(f2.to_bytes() == f.to_bytes());
        // Bytes, not struct equality: the detector keeps NaN for "nothing
        // expected yet".
        let bytes = |d: &SeriesAnomalyDetector| postcard::to_stdvec(d).unwrap();
        assert!(bytes(&d2.unwrap()) == bytes(&d));
        // What agents before version 2 saved.
        let (f1, d1) = decode(FORECASTER_ONLY_VERSION, &f.to_bytes()).unwrap();
        assert!(f1.to_bytes() == f.to_bytes());
        assert!(d1.is_none());
        let e = decode(7, &blob).unwrap_err();
        assert!(e.to_string().contains("version 7"), "{e}");
        let e = decode(SERIES_STATE_VERSION, &blob[..blob.len() / 3]).unwrap_err();
        assert!(e.to_string().contains("does not decode"), "{e}");
        let e = decode(FORECASTER_ONLY_VERSION, &blob).unwrap_err();
        assert!(matches!(e, PersistError::Forecaster(_)), "{e}");
    }
}
