//! The scenarios: what one operation is, and what must exist before the
//! measured phase starts.
//!
//! `head`, `pull` and `ci` need an image on the target. Unless `--image`
//! names one, the setup pushes `PREFIX/{head,pull,base}:<layers>x<size>` with
//! fresh random layers and then reads its manifest back, so the operations
//! work on what the target actually serves. The tag spells the image's
//! shape, which is also how `regbench origin` knows what to generate.

use std::fmt;
use std::time::Instant;

use crate::client::Failure;
use crate::content::seed_of;
use crate::registry::{Ctx, Image};
use crate::stats::ImageRecord;

/// What a run does over and over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Scenario {
    /// `GET /v2/`.
    Ping,
    /// HEAD on the image's manifest and blobs in turn.
    Head,
    /// GET the manifest, then every blob, digests verified.
    Pull,
    /// Upload `--layers` fresh blobs, a config and a manifest.
    Push,
    /// A CI job: pull the base image, push a small image, HEAD-check layers.
    Ci,
    /// `GET /token` for one scope with the Basic credentials: issuance.
    Token,
}

impl Scenario {
    /// The operation's name in the tables.
    pub fn op_kind(self) -> &'static str {
        match self {
            Self::Ping => "ping",
            Self::Head => "head",
            Self::Pull => "pull",
            Self::Push => "push",
            Self::Ci => "ci job",
            Self::Token => "token",
        }
    }

    /// Operations run when neither `--count` nor `--duration` is given:
    /// enough for a meaningful table, few enough to end in seconds.
    pub fn default_count(self) -> u64 {
        match self {
            Self::Ping | Self::Head | Self::Token => 1000,
            Self::Pull | Self::Push | Self::Ci => 20,
        }
    }

    fn setup_repo(self) -> &'static str {
        match self {
            Self::Head => "head",
            Self::Ci => "base",
            Self::Ping | Self::Pull | Self::Push | Self::Token => "pull",
        }
    }
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Ping => "ping",
            Self::Head => "head",
            Self::Pull => "pull",
            Self::Push => "push",
            Self::Ci => "ci",
            Self::Token => "token",
        })
    }
}

/// The `ci` job's shape.
#[derive(Debug, Clone)]
pub struct CiMix {
    /// Pulls of the base image per job.
    pub pulls: u32,
    /// Fresh layers pushed per job.
    pub layers: u32,
    pub layer_size: u64,
    /// HEAD checks per job, cycling over the pushed then the base blobs;
    /// `None`: each of them once.
    pub heads: Option<u32>,
}

/// Everything an operation needs to know, shared read-only by all threads.
#[derive(Debug, Clone)]
pub struct Plan {
    pub scenario: Scenario,
    pub repo_prefix: String,
    pub blob_size: u64,
    pub layers: u32,
    /// `--image`: use this `(repository, reference)` instead of pushing one.
    pub image: Option<(String, String)>,
    pub ci: CiMix,
    /// Random per run, so every run pushes new content.
    pub run_id: u64,
}

/// Which client runs an operation, for unique names and seeds.
#[derive(Debug, Clone, Copy)]
pub struct Who {
    pub thread: usize,
    pub client: usize,
    /// This client's operation number.
    pub seq: u64,
    /// The run-wide operation number.
    pub ticket: u64,
}

/// Seed namespaces, so setup, push and ci layers never share content.
const SEED_SETUP: u64 = 1;
const SEED_PUSH: u64 = 2;
const SEED_CI: u64 = 3;

impl Plan {
    /// Prepares the image the scenario works on; `None` for ping, push and
    /// token.
    pub async fn setup(&self, ctx: &Ctx) -> Result<Option<Image>, Failure> {
        if matches!(
            self.scenario,
            Scenario::Ping | Scenario::Push | Scenario::Token
        ) {
            return Ok(None);
        }
        if let Some((repo, reference)) = &self.image {
            return ctx.get_manifest(repo, reference).await.map(Some);
        }
        let repo = format!("{}/{}", self.repo_prefix, self.scenario.setup_repo());
        let tag = format!("{}x{}", self.layers, self.blob_size);
        let layers: Vec<(u64, u64)> = (0..self.layers)
            .map(|i| {
                (
                    seed_of(&[self.run_id, SEED_SETUP, u64::from(i)]),
                    self.blob_size,
                )
            })
            .collect();
        ctx.push_image(&repo, &tag, &layers).await?;
        ctx.get_manifest(&repo, &tag).await.map(Some)
    }

    /// One operation. Its requests are timed and filed by `ctx`.
    pub async fn run_op(&self, ctx: &Ctx, image: Option<&Image>, who: Who) -> Result<(), Failure> {
        let need_image =
            || image.ok_or_else(|| Failure::new("setup", "the scenario's image was not prepared"));
        match self.scenario {
            Scenario::Ping => ctx.ping().await,
            Scenario::Head => {
                let image = need_image()?;
                let blobs: Vec<_> = image.blobs().collect();
                // Manifest first, then each blob, round-robin over the run.
                match (who.ticket % (blobs.len() as u64 + 1)) as usize {
                    0 => ctx.head_manifest(&image.repo, &image.reference).await,
                    i => ctx
                        .head_blob(&image.repo, &blobs[i - 1].digest, &[200])
                        .await
                        .map(drop),
                }
            }
            Scenario::Pull => {
                let image = need_image()?;
                let pulled = ctx.pull(&image.repo, &image.reference).await?;
                ctx.stats.borrow_mut().remember(record("pull", &pulled));
                Ok(())
            }
            Scenario::Push => {
                let repo = format!("{}/push", self.repo_prefix);
                let tag = self.tag(who);
                let layers: Vec<(u64, u64)> = (0..self.layers)
                    .map(|i| (self.seed(SEED_PUSH, who, i), self.blob_size))
                    .collect();
                let pushed = ctx.push_image(&repo, &tag, &layers).await?;
                ctx.stats.borrow_mut().remember(record("push", &pushed));
                Ok(())
            }
            Scenario::Ci => self.ci_job(ctx, need_image()?, who).await,
            Scenario::Token => {
                let realm = ctx.settings.bearer.clone().ok_or_else(|| {
                    Failure::new("setup", "no token realm was learnt from the target")
                })?;
                let scope = crate::bearer::scope_for(&format!("{}/token", self.repo_prefix));
                ctx.fetch_token(&realm, Some(&scope)).await.map(drop)
            }
        }
    }

    async fn ci_job(&self, ctx: &Ctx, base: &Image, who: Who) -> Result<(), Failure> {
        for _ in 0..self.ci.pulls {
            ctx.pull(&base.repo, &base.reference).await?;
        }
        let repo = format!("{}/ci-{}-{}", self.repo_prefix, who.thread, who.client);
        let layers: Vec<(u64, u64)> = (0..self.ci.layers)
            .map(|i| (self.seed(SEED_CI, who, i), self.ci.layer_size))
            .collect();
        let pushed = ctx.push_image(&repo, &self.tag(who), &layers).await?;
        // "Does this layer exist?": what CI asks most. The pushed blobs in
        // their repository, then the base image's in its own.
        let targets: Vec<(&str, &str)> = pushed
            .blobs()
            .map(|d| (repo.as_str(), d.digest.as_str()))
            .chain(
                base.blobs()
                    .map(|d| (base.repo.as_str(), d.digest.as_str())),
            )
            .collect();
        let heads = self.ci.heads.map_or(targets.len(), |n| n as usize);
        for &(repo, digest) in targets.iter().cycle().take(heads) {
            ctx.head_blob(repo, digest, &[200]).await?;
        }
        Ok(())
    }

    fn tag(&self, who: Who) -> String {
        format!(
            "r{:08x}-{}-{}-{}",
            self.run_id as u32, who.thread, who.client, who.seq
        )
    }

    fn seed(&self, space: u64, who: Who, layer: u32) -> u64 {
        seed_of(&[
            self.run_id,
            space,
            who.thread as u64,
            who.client as u64,
            who.seq,
            u64::from(layer),
        ])
    }
}

fn record(action: &'static str, image: &Image) -> ImageRecord {
    ImageRecord {
        action,
        repository: image.repo.clone(),
        tag: image.reference.clone(),
        manifest_digest: image.manifest_digest.clone(),
        blobs: image.blobs().map(|d| d.digest.clone()).collect(),
    }
}

/// How long setup took and what it prepared, for the report.
#[derive(Debug, Clone)]
pub struct SetupReport {
    pub image: Option<String>,
    pub seconds: f64,
}

impl SetupReport {
    pub fn new(image: Option<&Image>, started: Instant) -> Self {
        Self {
            image: image.map(|i| {
                format!(
                    "{}:{} ({} blobs, {} bytes)",
                    i.repo,
                    i.reference,
                    i.layers.len() + 1,
                    i.blobs().map(|d| d.size).sum::<u64>()
                )
            }),
            seconds: started.elapsed().as_secs_f64(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> Plan {
        Plan {
            scenario: Scenario::Push,
            repo_prefix: "p".into(),
            blob_size: 1,
            layers: 1,
            image: None,
            ci: CiMix {
                pulls: 1,
                layers: 1,
                layer_size: 1,
                heads: None,
            },
            run_id: 0xabcd_0123_4567,
        }
    }

    #[test]
    fn names_and_seeds_are_unique_per_client_and_op() {
        let p = plan();
        let who = |thread, client, seq| Who {
            thread,
            client,
            seq,
            ticket: 0,
        };
        assert_eq!(p.tag(who(1, 2, 3)), "r01234567-1-2-3");
        let seeds = [
            p.seed(SEED_PUSH, who(0, 0, 0), 0),
            p.seed(SEED_PUSH, who(0, 0, 0), 1),
            p.seed(SEED_PUSH, who(0, 0, 1), 0),
            p.seed(SEED_PUSH, who(0, 1, 0), 0),
            p.seed(SEED_PUSH, who(1, 0, 0), 0),
            p.seed(SEED_CI, who(0, 0, 0), 0),
        ];
        for (i, a) in seeds.iter().enumerate() {
            for b in &seeds[i + 1..] {
                assert_ne!(a, b);
            }
        }
    }

    #[test]
    fn defaults() {
        assert_eq!(Scenario::Ci.op_kind(), "ci job");
        assert_eq!(Scenario::Ping.to_string(), "ping");
        assert!(Scenario::Pull.default_count() < Scenario::Ping.default_count());
    }
}
