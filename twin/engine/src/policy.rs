//! Rego evaluation as upstream Trustee does it, with the same crate (regorus).
//!
//! Three callers in Trustee share one evaluation routine,
//! `deps/policy-engine/src/policy/rego.rs` `Regorus::evaluate_sync` (trustee 78962cd4):
//! a fresh `regorus::Engine` per evaluation, the policy added under the empty path, the optional
//! `data` document added, the input set from JSON, the extensions registered, then each requested
//! rule evaluated with `eval_rule`. A rule the policy does not define ("not a valid rule path") is
//! reported as absent (`None`), any other evaluation error fails the whole evaluation.
//!
//! `evaluate` below is that routine; the attestation broker (`appraisal.rs`) and the KBS resource
//! policy (`resource_allowed`) read its results the way their upstream callers do.

use std::collections::HashMap;

use anyhow::{anyhow, bail, Context, Result};
use serde_json::Value;

/// A Rego extension: name, number of arguments (upstream passes its `id` there), function.
pub struct Extension {
    pub name: String,
    pub nargs: u8,
    pub function: Box<dyn regorus::Extension>,
}

/// The results of `evaluate`: per requested rule, its JSON value or `None` when not defined.
pub type RuleResults = HashMap<String, Option<Value>>;

/// trustee `deps/policy-engine/src/policy/rego.rs` `Regorus::evaluate_sync`.
pub fn evaluate(
    data: Option<&Value>,
    input: &str,
    policy: &str,
    rules: &[&str],
    extensions: Vec<Extension>,
    notes: &mut Vec<String>,
) -> Result<RuleResults> {
    let mut engine = regorus::Engine::new();
    engine
        .add_policy(String::new(), policy.to_string())
        .map_err(|e| anyhow!("Failed to load policy: {e:#}"))?;
    if let Some(data) = data {
        let data = regorus::Value::from_json_str(&data.to_string())
            .map_err(|e| anyhow!("json serialization failed: {e:#}"))?;
        engine
            .add_data(data)
            .map_err(|e| anyhow!("Failed to load reference data: {e:#}"))?;
    }
    engine
        .set_input_json(input)
        .map_err(|e| anyhow!("Failed to set input data: {e:#}"))?;
    for extension in extensions {
        let name = extension.name.clone();
        let nargs = extension.nargs;
        engine
            .add_extension(extension.name, extension.nargs, extension.function)
            .map_err(|e| anyhow!("Failed to add regorus extension: {name} with id {nargs}: {e:#}"))?;
    }
    let mut results = RuleResults::new();
    for rule in rules {
        let value = match engine.eval_rule(rule.to_string()) {
            Ok(value) => Some(value),
            // upstream: "Extensions claim is optional." -- an undefined rule path is not an error.
            Err(e) if e.to_string().contains("not a valid rule path") => {
                notes.push(format!("info: No claim {rule} found in policy."));
                None
            }
            Err(e) => bail!("Failed to eval policy: {e:#}"),
        };
        let value = match value {
            Some(v) => Some(serde_json::to_value(v).context("json serialization failed")?),
            None => None,
        };
        results.insert(rule.to_string(), value);
    }
    Ok(results)
}

/// trustee `deps/policy-engine/src/policy/rego.rs` `Regorus::check_policy_format`: a policy is
/// accepted when regorus parses it.
pub fn check(policy: &str) -> Result<()> {
    let mut engine = regorus::Engine::new();
    engine
        .add_policy(String::new(), policy.to_string())
        .map_err(|e| anyhow!("Failed to load policy: {e:#}"))?;
    Ok(())
}

/// The rule the KBS asks of its resource policy: trustee `kbs/src/api_server.rs` `KBS_POLICY_RULE`.
pub const KBS_POLICY_RULE: &str = "data.policy.allow";

/// The KBS's resource decision, trustee `kbs/src/api_server.rs` `api` (plugin branch): the policy's
/// `data` is `{"plugin", "resource-path" (the path parts after the plugin), "query"}`, its `input`
/// the verified token's claims, and only `data.policy.allow` is read. A policy without the rule,
/// or one whose value is not a boolean, denies (with a warning), as upstream.
pub fn resource_allowed(
    policy: &str,
    claims: &Value,
    plugin: &str,
    resource_path: &[String],
    query: &Value,
    notes: &mut Vec<String>,
) -> Result<bool> {
    let data = serde_json::json!({
        "plugin": plugin,
        "resource-path": resource_path,
        "query": query,
    });
    let results = evaluate(
        Some(&data),
        &claims.to_string(),
        policy,
        &[KBS_POLICY_RULE],
        vec![],
        notes,
    )?;
    match results.get(KBS_POLICY_RULE).cloned().flatten() {
        None => {
            notes.push(format!(
                "warn: The KBS Resource Policy does not define the `{KBS_POLICY_RULE}` rule, use false as default"
            ));
            Ok(false)
        }
        Some(Value::Bool(b)) => Ok(b),
        Some(_) => {
            notes.push(format!(
                "warn: `{KBS_POLICY_RULE}` rule result is not a boolean, use false as default"
            ));
            Ok(false)
        }
    }
}
