//! twin-attestation-engine: the Trustee twin's attestation service and KBS policy decisions, made by
//! the libraries upstream Trustee uses (regorus, ear, kbs-types at the versions trustee pins).
//!
//! One long-lived process per KBS, speaking JSON lines: each line on stdin is one request
//! `{"op": ..., ...}`, answered by one line on stdout `{"ok": true, "result": ..., "notes": [...]}`
//! or `{"ok": false, "error": "...", "notes": [...]}`. `notes` carries what upstream would log
//! (warnings such as a policy without `trust_claims`). A request that makes upstream panic is
//! answered with an error; the process keeps serving.

mod broker;
mod policy;
mod protocol;

use std::collections::HashMap;
use std::io::{self, BufRead, Write};
use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, Context, Result};
use serde::Deserialize;
use serde_json::{json, Value};

/// The crates doing the work, for `ping` (pinned in Cargo.toml to trustee's versions).
const CRATES: &[(&str, &str)] = &[("regorus", "0.11.0"), ("ear", "0.5.0"), ("kbs-types", "0.18.0")];

#[derive(Deserialize)]
struct SignerSpec {
    key_pem: String,
    #[serde(default)]
    cert_pem: Option<String>,
    #[serde(default)]
    cert_url: Option<String>,
}

struct State {
    /// broker.rs `new`: without a configured signer, one ephemeral key for the broker's lifetime.
    ephemeral: Option<broker::Signer>,
}

fn field<'a>(req: &'a Value, name: &str) -> Result<&'a Value> {
    req.get(name).ok_or_else(|| anyhow!("request has no {name:?}"))
}

fn text<'a>(req: &'a Value, name: &str) -> Result<&'a str> {
    field(req, name)?.as_str().ok_or_else(|| anyhow!("{name:?} must be a string"))
}

/// `reference_values` ({name: value}, or null for "no RVPS"), with the optional
/// `reference_errors` ({name: error}) and `reference_failure` (error of every lookup).
fn reference_values(req: &Value) -> Result<Option<broker::ReferenceValues>> {
    match req.get("reference_values") {
        None | Some(Value::Null) => Ok(None),
        Some(v) => {
            let values: HashMap<String, Value> =
                serde_json::from_value(v.clone()).context("reference_values must be an object")?;
            let errors: HashMap<String, String> = match req.get("reference_errors") {
                Some(e) if !e.is_null() => serde_json::from_value(e.clone()).context("reference_errors")?,
                _ => HashMap::new(),
            };
            let failure = req.get("reference_failure").and_then(Value::as_str).map(str::to_string);
            Ok(Some(Arc::new(broker::ReferenceStore { values, errors, failure })))
        }
    }
}

fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

fn handle(state: &mut State, req: &Value, notes: &mut Vec<String>) -> Result<Value> {
    let op = text(req, "op")?;
    match op {
        "ping" => Ok(json!({"engine": env!("CARGO_PKG_VERSION"),
                            "crates": CRATES.iter().map(|(n, v)| (n.to_string(), json!(v))).collect::<serde_json::Map<_, _>>()})),
        "check_policy" => {
            policy::check(text(req, "policy")?)?;
            Ok(json!(true))
        }
        // One attestation policy applied to one policy input (what the broker feeds it).
        "appraise" => {
            let policy_id = req.get("policy_id").and_then(Value::as_str).unwrap_or("default_cpu");
            let input = field(req, "input")?.to_string();
            let appraisal =
                broker::appraise(text(req, "policy")?, policy_id, &input, reference_values(req)?, notes)?;
            Ok(json!({
                "status": appraisal.status.as_str(),
                "trust_vector": serde_json::to_value(appraisal.trust_vector)?,
                "appraisal": serde_json::to_value(&appraisal)?,
            }))
        }
        "tiers" => {
            let vector = field(req, "trust_vector")?.as_object().context("trust_vector must be an object")?;
            broker::tiers(vector)
        }
        "transform_claims" => {
            let tee: kbs_types::Tee = serde_json::from_value(field(req, "tee")?.clone())?;
            let out = broker::transform_claims(
                field(req, "claims")?.clone(),
                req.get("init_data_claims").cloned().unwrap_or(Value::Null),
                req.get("runtime_data_claims").cloned().unwrap_or(Value::Null),
                tee,
                req.get("verbose").and_then(Value::as_bool).unwrap_or(true),
            )?;
            Ok(serde_json::to_value(out)?)
        }
        "issue" => {
            let tee_claims: Vec<broker::TeeClaims> =
                serde_json::from_value(field(req, "tee_claims")?.clone()).context("tee_claims")?;
            let policies: HashMap<String, String> =
                serde_json::from_value(field(req, "policies")?.clone()).context("policies")?;
            let policy_ids: Vec<String> = match req.get("policy_ids") {
                Some(v) => serde_json::from_value(v.clone()).context("policy_ids")?,
                None => vec!["default".to_string()],
            };
            let config: broker::TokenConfig = match req.get("config") {
                Some(v) if !v.is_null() => serde_json::from_value(v.clone()).context("config")?,
                _ => broker::TokenConfig::default(),
            };
            let configured = match req.get("signer") {
                Some(v) if !v.is_null() => {
                    let spec: SignerSpec = serde_json::from_value(v.clone()).context("signer")?;
                    Some(broker::Signer::from_pem(&spec.key_pem, spec.cert_pem.as_deref(), spec.cert_url)?)
                }
                _ => None,
            };
            let signer = match configured {
                Some(ref s) => s,
                None => {
                    if state.ephemeral.is_none() {
                        notes.push("info: No Token Signer key in config file, create an ephemeral key and without CA pubkey cert".into());
                        state.ephemeral = Some(broker::Signer::ephemeral()?);
                    }
                    state.ephemeral.as_ref().unwrap()
                }
            };
            let issued_at = req.get("now").and_then(Value::as_i64).unwrap_or_else(now);
            let (token, claims) = broker::issue(
                tee_claims, &policies, &policy_ids, reference_values(req)?, &config, signer, issued_at, notes,
            )?;
            Ok(json!({"token": token, "claims": claims, "jwk": serde_json::to_value(signer.jwk()?)?}))
        }
        "resource" => {
            let path: Vec<String> = serde_json::from_value(field(req, "resource_path")?.clone())
                .context("resource_path must be a list of path parts")?;
            let allowed = policy::resource_allowed(
                text(req, "policy")?,
                field(req, "claims")?,
                req.get("plugin").and_then(Value::as_str).unwrap_or("resource"),
                &path,
                req.get("query").unwrap_or(&json!({})),
                notes,
            )?;
            Ok(json!(allowed))
        }
        "parse" => protocol::parse(text(req, "kind")?, text(req, "body")?),
        other => Err(anyhow!("unknown op {other:?}")),
    }
}

fn main() {
    // A panic inside a request is reported on that request's line, not on stderr.
    panic::set_hook(Box::new(|_| {}));
    let mut state = State { ephemeral: None };
    let stdin = io::stdin();
    let mut stdout = io::stdout().lock();
    for line in stdin.lock().lines() {
        let Ok(line) = line else { break };
        if line.trim().is_empty() {
            continue;
        }
        let mut notes = Vec::new();
        let outcome = match serde_json::from_str::<Value>(&line) {
            Err(e) => Err(anyhow!("request is not JSON: {e}")),
            Ok(req) => match panic::catch_unwind(AssertUnwindSafe(|| handle(&mut state, &req, &mut notes))) {
                Ok(result) => result,
                Err(payload) => {
                    let msg = payload
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                        .unwrap_or_else(|| "panic".to_string());
                    Err(anyhow!("attestation service panicked: {msg}"))
                }
            },
        };
        let reply = match outcome {
            Ok(result) => json!({"ok": true, "result": result, "notes": notes}),
            Err(e) => json!({"ok": false, "error": format!("{e:#}"), "notes": notes}),
        };
        if writeln!(stdout, "{reply}").and_then(|_| stdout.flush()).is_err() {
            break;
        }
    }
}
