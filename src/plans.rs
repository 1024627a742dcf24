//! The dialplans new calls are routed with, and the prompts they play: loaded at start-up,
//! and again on SIGHUP or `POST /v1/dialplans/reload`, without a restart. A call keeps the
//! plan and the prompts it started with, so a reload changes only the calls after it, and
//! a set of files with any problem in it is refused whole, the running set staying.

use crate::call::{load_prompts, script::Prompts};
use crate::dialplan::{Dialplans, Summary};
use crate::tts::Tts;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use tracing::info;

/// One loaded set of dialplans with their prompts.
pub struct Loaded {
    pub dialplans: Dialplans,
    pub prompts: Arc<Prompts>,
}

/// Why a set of dialplans was refused: every problem, each naming where it is.
#[derive(Debug, thiserror::Error)]
#[error("{}", problems.join("\n"))]
pub struct PlansError {
    pub problems: Vec<String>,
}

impl PlansError {
    fn one(problem: String) -> PlansError {
        PlansError {
            problems: vec![problem],
        }
    }
}

/// The current set, and what loading another needs.
pub struct Plans {
    current: RwLock<Arc<Loaded>>,
    dir: PathBuf,
    media: PathBuf,
    tts: Tts,
    /// The config's connectors, which every follow-up must name one of.
    connectors: Vec<String>,
    /// One load at a time, so that two reloads cannot finish in the wrong order.
    loading: tokio::sync::Mutex<()>,
}

impl Plans {
    /// Loads the dialplans of `dir` with the media of `media`.
    pub async fn load<T>(
        dir: PathBuf,
        media: PathBuf,
        tts: Tts,
        connectors: &BTreeMap<String, T>,
    ) -> Result<Plans, PlansError> {
        let connectors: Vec<String> = connectors.keys().cloned().collect();
        let loaded = read(&dir, &media, &tts, &connectors).await?;
        Ok(Plans {
            current: RwLock::new(Arc::new(loaded)),
            dir,
            media,
            tts,
            connectors,
            loading: tokio::sync::Mutex::new(()),
        })
    }

    /// The set new calls use now.
    pub fn current(&self) -> Arc<Loaded> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Reads the directory again and, when every file is good, makes it the current set.
    pub async fn reload(&self) -> Result<Summary, PlansError> {
        let _one = self.loading.lock().await;
        let loaded = read(&self.dir, &self.media, &self.tts, &self.connectors).await?;
        let summary = loaded.dialplans.summary();
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(loaded);
        info!(dialplans = summary.plans.len(), "dialplans reloaded");
        Ok(summary)
    }
}

async fn read(
    dir: &std::path::Path,
    media: &std::path::Path,
    tts: &Tts,
    connectors: &[String],
) -> Result<Loaded, PlansError> {
    let dialplans = Dialplans::load(dir, media).map_err(|errors| PlansError {
        problems: errors.iter().map(ToString::to_string).collect(),
    })?;
    let mut problems = Vec::new();
    for plan in dialplans.iter() {
        for (name, spec) in &plan.followups {
            if !connectors.contains(&spec.connector) {
                problems.push(format!(
                    "{}: [followup.{name}] goes out through connector {:?}, which the config \
                     does not have: add a [connector.{}] table",
                    plan.file.display(),
                    spec.connector,
                    spec.connector
                ));
            }
        }
    }
    if !problems.is_empty() {
        return Err(PlansError { problems });
    }
    let prompts = load_prompts(&dialplans, tts)
        .await
        .map_err(|e| PlansError::one(format!("prompt {e}")))?;
    Ok(Loaded {
        dialplans,
        prompts: Arc::new(prompts),
    })
}
