//! The EAR attestation-token broker, as trustee's attestation service runs it
//! (`attestation-service/src/ear_token/broker.rs` `EarAttestationTokenBroker::issue`, trustee 78962cd4),
//! with the crates it uses: `regorus` (through `policy::evaluate`), `ear` for the appraisal, trust
//! vector, tiers and the signed token, `kbs-types` for the TEE names.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use anyhow::{anyhow, bail, Context, Result};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use ear::{Algorithm, Appraisal, Ear, Extensions, RawValue, RawValueKind, TrustVector, VerifierID};
use jsonwebtoken::jwk;
use kbs_types::Tee;
use openssl::bn::{BigNum, BigNumContext};
use openssl::ec::{EcGroup, EcKey};
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::x509::X509;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::policy;

/// broker.rs `TRUST_CLAIMS_RULE`: the only rule read for the trust vector.
pub const TRUST_CLAIMS_RULE: &str = "data.policy.trust_claims";
/// broker.rs `EXTENSIONS_RULE`.
pub const EXTENSIONS_RULE: &str = "data.policy.extensions";

/// `attestation-service/src/ear_token/mod.rs` defaults (`EarTokenConfiguration::default`).
pub const DEFAULT_TOKEN_DURATION: i64 = 5;
pub const COCO_AS_ISSUER_NAME: &str = "CoCo-Attestation-Service";
pub const DEFAULT_PROFILE: &str = "tag:github.com,2024:confidential-containers/Trustee";
pub const DEFAULT_DEVELOPER_NAME: &str = "https://confidentialcontainers.org";
/// Upstream's default build name is its Cargo package name and version ("attestation-service 0.1.0").
pub const DEFAULT_BUILD_NAME: &str = "attestation-service 0.1.0";

/// `EarTokenConfiguration` (same field names and defaults), minus the signer, which comes as PEM text.
#[derive(Deserialize, Debug, Clone)]
#[serde(default)]
pub struct TokenConfig {
    pub duration_min: i64,
    pub issuer_name: String,
    pub developer_name: String,
    pub build_name: String,
    pub profile_name: String,
    pub verbose_token: bool,
}

impl Default for TokenConfig {
    fn default() -> Self {
        Self {
            duration_min: DEFAULT_TOKEN_DURATION,
            issuer_name: COCO_AS_ISSUER_NAME.to_string(),
            developer_name: DEFAULT_DEVELOPER_NAME.to_string(),
            build_name: DEFAULT_BUILD_NAME.to_string(),
            profile_name: DEFAULT_PROFILE.to_string(),
            verbose_token: true,
        }
    }
}

/// `attestation-service/src/lib.rs` `TeeClaims`: one verified device.
#[derive(Deserialize, Debug, Clone)]
pub struct TeeClaims {
    pub tee: Tee,
    pub tee_class: String,
    pub claims: Value,
    #[serde(default)]
    pub init_data_claims: Value,
    #[serde(default)]
    pub runtime_data_claims: Value,
}

/// broker.rs `TokenExtension`.
#[derive(Debug, Deserialize)]
struct TokenExtension {
    name: String,
    key: i32,
    value: Value,
}

/// The token signer: the configured key (and certificate chain), or the process's ephemeral key
/// (broker.rs `new`: "No Token Signer key in config file, create an ephemeral key").
pub struct Signer {
    key: EcKey<Private>,
    chain: Option<Vec<X509>>,
    cert_url: Option<String>,
}

impl Signer {
    pub fn ephemeral() -> Result<Self> {
        let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1)?;
        Ok(Self { key: EcKey::generate(&group)?, chain: None, cert_url: None })
    }

    /// broker.rs `new`: a P-256 key from PEM, the optional PEM certificate chain.
    pub fn from_pem(key_pem: &str, cert_pem: Option<&str>, cert_url: Option<String>) -> Result<Self> {
        let key = EcKey::private_key_from_pem(key_pem.as_bytes())
            .map_err(|e| anyhow!("Read Token Signer private key failed: {e:?}"))?;
        if key.group().curve_name() != Some(Nid::X9_62_PRIME256V1) {
            bail!("Only P-256 attestation token signing keys are supported");
        }
        let chain = cert_pem
            .map(|pem| X509::stack_from_pem(pem.as_bytes()).map_err(|_| anyhow!("Invalid PEM certificate chain")))
            .transpose()?;
        Ok(Self { key, chain, cert_url })
    }

    /// broker.rs `pubkey_jwk`: ES256, x5u/x5c when configured, fixed-length EC coordinates.
    pub fn jwk(&self) -> Result<jwk::Jwk> {
        let chain = self
            .chain
            .as_ref()
            .map(|certs| certs.iter().map(|c| Ok(STANDARD.encode(c.to_der()?))).collect::<Result<Vec<_>>>())
            .transpose()?;
        let common = jwk::CommonParameters {
            key_algorithm: Some(jwk::KeyAlgorithm::ES256),
            x509_url: self.cert_url.clone(),
            x509_chain: chain,
            ..Default::default()
        };
        let group = self.key.group();
        let mut ctx = BigNumContext::new()?;
        let mut x = BigNum::new()?;
        let mut y = BigNum::new()?;
        self.key.public_key().affine_coordinates_gfp(group, &mut x, &mut y, &mut ctx)?;
        let size = group.degree().div_ceil(8) as i32;
        let algorithm = jwk::AlgorithmParameters::EllipticCurve(jwk::EllipticCurveKeyParameters {
            key_type: jwk::EllipticCurveKeyType::EC,
            curve: jwk::EllipticCurve::P256,
            x: URL_SAFE_NO_PAD.encode(x.to_vec_padded(size)?),
            y: URL_SAFE_NO_PAD.encode(y.to_vec_padded(size)?),
        });
        Ok(jwk::Jwk { common, algorithm })
    }

    fn pkcs8_pem(&self) -> Result<Vec<u8>> {
        Ok(PKey::from_ec_key(self.key.clone())?.private_key_to_pem_pkcs8()?)
    }
}

/// The reference values the `query_reference_value` extension answers from (the RVPS's view):
/// `values` by name; `errors` the names whose lookup fails in the store (the error upstream's RVPS
/// gives); `failure` set when every lookup fails (a store that cannot be read at all).
#[derive(Deserialize, Debug, Default)]
pub struct ReferenceStore {
    #[serde(default)]
    pub values: HashMap<String, Value>,
    #[serde(default)]
    pub errors: HashMap<String, String>,
    #[serde(default)]
    pub failure: Option<String>,
}

pub type ReferenceValues = Arc<ReferenceStore>;

/// broker.rs `issue`, the `query_reference_value` extension: one string argument; an unknown name
/// gives `null` with a warning ("No reference value found for the given id: ..., use NULL as the
/// returned value").
fn query_reference_value(reference: ReferenceValues, warnings: Arc<Mutex<Vec<String>>>) -> policy::Extension {
    let function = move |params: Vec<regorus::Value>| -> anyhow::Result<regorus::Value> {
        if params.len() != 1 {
            bail!("query_reference_value extension requires exactly one parameter");
        }
        let id = params[0]
            .as_string()
            .context("query_reference_value extension parameter must be a string")?
            .to_string();
        // broker.rs: a failed RVPS query fails the evaluation ("Get Reference Value from RVPS failed").
        if let Some(error) = reference.failure.as_ref().or_else(|| reference.errors.get(&id)) {
            bail!("Get Reference Value from RVPS failed: {error}");
        }
        match reference.values.get(&id) {
            Some(v) => Ok(serde_json::from_value(v.clone())?),
            None => {
                if let Ok(mut w) = warnings.lock() {
                    w.push(format!("warn: No reference value found for the given id: {id}, use NULL as the returned value"));
                }
                Ok(regorus::Value::Null)
            }
        }
    };
    // upstream registers it with `id: 1`, passed to regorus as the number of arguments.
    policy::Extension { name: "query_reference_value".to_string(), nargs: 1, function: Box::new(function) }
}

/// One appraisal: broker.rs `issue`, the body of its per-device loop from the policy evaluation to
/// `update_status_from_trust_vector` (the annotated evidence and policy id are set by the caller).
/// `reference` None means no RVPS client (the extension is then not registered, as upstream).
pub fn appraise(
    policy_text: &str,
    policy_id: &str,
    input_json: &str,
    reference: Option<ReferenceValues>,
    notes: &mut Vec<String>,
) -> Result<Appraisal> {
    let mut appraisal = Appraisal::new();
    let warnings = Arc::new(Mutex::new(Vec::new()));
    let extensions = reference.map(|r| vec![query_reference_value(r, warnings.clone())]).unwrap_or_default();
    let results = policy::evaluate(
        None,
        input_json,
        policy_text,
        &[TRUST_CLAIMS_RULE, EXTENSIONS_RULE],
        extensions,
        notes,
    );
    if let Ok(mut w) = warnings.lock() {
        notes.append(&mut w);
    }
    let results = results?;
    match results
        .get(TRUST_CLAIMS_RULE)
        .with_context(|| format!("Trust claims rule {TRUST_CLAIMS_RULE} not found for policy {policy_id}"))?
    {
        Some(value) => {
            let trust_claims = value.as_object().context("Trust claims is not an object")?;
            for (name, v) in trust_claims {
                let claim_value = v.as_i64().context("Trust claim value not number")?;
                // upstream: `mut_by_name(k).unwrap()` -- an unknown claim name panics the request.
                let claim = appraisal
                    .trust_vector
                    .mut_by_name(name)
                    .map_err(|e| anyhow!("attestation service panicked: unknown trust claim {name:?} ({e})"))?;
                // upstream: `set(claim_value as i8)` -- a value outside -128..=127 wraps.
                claim.set(claim_value as i8);
            }
        }
        None => {
            notes.push(format!(
                "warn: No trust claims found by enforcing policy {policy_id}, set all TrustVector claims to 0"
            ));
            appraisal.trust_vector.set_all(0);
        }
    }
    if !appraisal.trust_vector.any_set() {
        bail!("At least one policy claim must be set.");
    }
    let mut extensions = Extensions::new();
    let extension_claims = results
        .get(EXTENSIONS_RULE)
        .context("Extensions rule not found")?
        .clone()
        .unwrap_or(json!([]));
    let extension_claims: Vec<TokenExtension> = serde_json::from_value(extension_claims)?;
    for extension in extension_claims {
        let value: RawValue = serde_json::from_str(&serde_json::to_string(&extension.value)?)?;
        extensions.register(&extension.name, extension.key, value.kind())?;
        extensions.set_by_name(&extension.name, value)?;
    }
    appraisal.extensions = extensions;
    appraisal.update_status_from_trust_vector();
    Ok(appraisal)
}

/// broker.rs `transform_claims`: init_data/report_data move to the top with their parsed claims,
/// everything else goes under the TEE's name; the policy input and the annotated evidence.
pub fn transform_claims(
    mut input_claims: Value,
    init_data_claims: Value,
    mut runtime_data_claims: Value,
    tee: Tee,
    verbose: bool,
) -> Result<BTreeMap<String, RawValue>> {
    let mut output = BTreeMap::new();
    if let Some(map) = input_claims.as_object_mut() {
        if let Some(init_data) = map.remove("init_data") {
            let text = init_data.as_str().context("init_data claim is not a string")?;
            output.insert("init_data".to_string(), RawValue::String(text.to_string()));
            output.insert("init_data_claims".to_string(), to_raw(&init_data_claims)?);
        }
        if let Some(report_data) = map.remove("report_data") {
            let text = report_data.as_str().context("report_data claim is not a string")?;
            output.insert("report_data".to_string(), RawValue::String(text.to_string()));
            if !verbose {
                runtime_data_claims.as_object_mut().and_then(|m| m.remove("additional-evidence"));
            }
            output.insert("runtime_data_claims".to_string(), to_raw(&runtime_data_claims)?);
        }
    }
    output.insert(serde_variant::to_variant_name(&tee)?.to_string(), to_raw(&input_claims)?);
    Ok(output)
}

fn to_raw(value: &Value) -> Result<RawValue> {
    Ok(serde_json::from_str(&serde_json::to_string(value)?)?)
}

/// broker.rs `issue`: one appraisal per device with the policy `<policy id>_<tee class>`, submods
/// named `<class><index>`, `exp` and `iss` as registered extensions, the header's JWK, signed ES256.
pub fn issue(
    all_tee_claims: Vec<TeeClaims>,
    policies: &HashMap<String, String>,
    policy_ids: &[String],
    reference: Option<ReferenceValues>,
    config: &TokenConfig,
    signer: &Signer,
    now: i64,
    notes: &mut Vec<String>,
) -> Result<(String, Value)> {
    if policy_ids.len() > 1 {
        notes.push("warn: EAR token only accepts the first policy. The rest will be ignored.".to_string());
    }
    if policy_ids.is_empty() {
        bail!("No policy is given for EAR token generation.");
    }
    let mut class_indices: HashMap<String, u8> = HashMap::new();
    let mut submods = BTreeMap::new();
    for tee_claims in all_tee_claims {
        let tcb_claims = transform_claims(
            tee_claims.claims,
            tee_claims.init_data_claims,
            tee_claims.runtime_data_claims,
            tee_claims.tee,
            config.verbose_token,
        )?;
        let tcb_claims_json = serde_json::to_string(&tcb_claims)?;
        let policy_id = format!("{}_{}", policy_ids[0], tee_claims.tee_class);
        // policy-engine `get_policy`: "Policy `<id>.rego` not found".
        let policy_text = policies
            .get(&policy_id)
            .ok_or_else(|| anyhow!("Policy `{policy_id}.rego` not found"))?;
        let mut appraisal = appraise(policy_text, &policy_id, &tcb_claims_json, reference.clone(), notes)?;
        appraisal.annotated_evidence = tcb_claims;
        appraisal.policy_id = Some(policy_ids[0].clone());
        appraisal.update_status_from_trust_vector();
        let index = class_indices
            .entry(tee_claims.tee_class.clone())
            .and_modify(|i| *i += 1)
            .or_insert(0);
        submods.insert(format!("{}{}", tee_claims.tee_class, index), appraisal);
    }
    let exp = now
        .checked_add(config.duration_min.checked_mul(60).ok_or(anyhow!("Token expiration overflow."))?)
        .ok_or(anyhow!("Token expiration overflow."))?;
    let mut extensions = Extensions::new();
    extensions.register("exp", 4, RawValueKind::Integer)?;
    extensions.set_by_name("exp", RawValue::Integer(exp))?;
    extensions.register("iss", 1, RawValueKind::String)?;
    extensions.set_by_name("iss", RawValue::String(config.issuer_name.clone()))?;
    let ear = Ear {
        profile: config.profile_name.clone(),
        iat: now,
        vid: VerifierID { build: config.build_name.clone(), developer: config.developer_name.clone() },
        raw_evidence: None,
        nonce: None,
        submods,
        extensions,
    };
    let mut header = ear::new_jwt_header(&Algorithm::ES256)?;
    header.jwk = Some(signer.jwk()?);
    let token = ear.sign_jwt_pem_with_header(&header, &signer.pkcs8_pem()?)?;
    Ok((token, serde_json::to_value(&ear)?))
}

/// The tiers of a trust vector and the status they give, by the `ear` crate
/// (`TrustClaim::tier`, `Appraisal::update_status_from_trust_vector`); values are cast to i8 as the
/// broker does.
pub fn tiers(vector: &serde_json::Map<String, Value>) -> Result<Value> {
    let mut appraisal = Appraisal::new();
    appraisal.trust_vector = TrustVector::new();
    let mut claim_tiers = serde_json::Map::new();
    for (name, v) in vector {
        let value = v.as_i64().context("Trust claim value not number")?;
        let claim = appraisal.trust_vector.mut_by_name(name)?;
        claim.set(value as i8);
        claim_tiers.insert(name.clone(), json!(claim.tier().as_str()));
    }
    appraisal.update_status_from_trust_vector();
    Ok(json!({"tiers": claim_tiers, "status": appraisal.status.as_str(),
              "trust_vector": serde_json::to_value(appraisal.trust_vector)?}))
}
