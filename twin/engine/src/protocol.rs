//! KBS protocol messages as the `kbs-types` crate defines them, parsed the way the KBS parses them
//! (trustee `kbs/src/attestation/backend.rs`, trustee 78962cd4): a body the real KBS rejects is
//! rejected here with the same reason.

use std::collections::HashMap;

use anyhow::{bail, Context, Result};
use kbs_types::{Attestation, Challenge, ErrorInformation, Request, Response, Tee};
use semver::{BuildMetadata, Prerelease, Version, VersionReq};
use serde_json::Value;

/// backend.rs `KBS_MAJOR_VERSION`.`KBS_MINOR_VERSION`.`KBS_PATCH_VERSION`, required exactly
/// (`VersionReq::parse("=0.4.0")`).
const KBS_VERSION: (u64, u64, u64) = (0, 4, 0);

fn version_req() -> VersionReq {
    let version = Version {
        major: KBS_VERSION.0,
        minor: KBS_VERSION.1,
        patch: KBS_VERSION.2,
        pre: Prerelease::EMPTY,
        build: BuildMetadata::EMPTY,
    };
    VersionReq::parse(&format!("={version}")).expect("a valid version requirement")
}

/// Parse `body` as the message `kind` and return it as the crate serialises it back.
pub fn parse(kind: &str, body: &str) -> Result<Value> {
    Ok(match kind {
        // backend.rs `__auth`: deserialize, then the protocol version check.
        "Request" => {
            let request: Request = serde_json::from_str(body).context("deserialize Request")?;
            let version = Version::parse(&request.version).context("failed to parse KBS version")?;
            let req = version_req();
            if !req.matches(&version) {
                bail!(
                    "KBS Client Protocol Version Mismatch: expect {} while the request is {}",
                    req,
                    request.version
                );
            }
            serde_json::to_value(request)?
        }
        // backend.rs `attest`: deserialize; then the additional evidence, when not empty, is a
        // JSON map from TEE name to evidence.
        "Attestation" => {
            let attestation: Attestation = serde_json::from_str(body).context("deserialize Attestation")?;
            let mut value = serde_json::to_value(&attestation)?;
            if !attestation.tee_evidence.additional_evidence.is_empty() {
                let additional: HashMap<Tee, Value> =
                    serde_json::from_str(&attestation.tee_evidence.additional_evidence)?;
                value["additional_evidence_parsed"] = serde_json::to_value(additional)?;
            }
            value
        }
        "Challenge" => serde_json::to_value(serde_json::from_str::<Challenge>(body).context("deserialize Challenge")?)?,
        "Response" => serde_json::to_value(serde_json::from_str::<Response>(body).context("deserialize Response")?)?,
        "ErrorInformation" => serde_json::to_value(
            serde_json::from_str::<ErrorInformation>(body).context("deserialize ErrorInformation")?,
        )?,
        "Tee" => serde_json::to_value(serde_json::from_value::<Tee>(Value::String(body.to_string()))
            .with_context(|| format!("unknown TEE {body:?}"))?)?,
        other => bail!("unknown KBS protocol message type {other:?} (Request, Challenge, Attestation, Response, ErrorInformation, Tee)"),
    })
}
