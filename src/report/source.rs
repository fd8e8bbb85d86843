//! Where `ddtwatch report` gets a record from: a running ddtwatch's API (which builds it), or a
//! summary file (`replay --summary`, or one deployment's API summary) plus audit-log files.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

use super::Format;

/// The record as a running ddtwatch at `url` renders it (`GET /api/v1/deployments/{id}/report`),
/// with the bearer `token` when given; an error names the endpoint and its answer.
pub async fn fetch(url: &str, deployment: &str, format: Format, token: Option<&str>) -> anyhow::Result<String> {
    let endpoint =
        format!("{}/api/v1/deployments/{deployment}/report?format={}", url.trim_end_matches('/'), format.as_str());
    let mut req = crate::notify::http_client().get(&endpoint);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.with_context(|| format!("asking {endpoint}"))?;
    let status = resp.status();
    let body = resp.text().await?;
    if !status.is_success() {
        bail!("{endpoint} answered {status}: {body}");
    }
    Ok(body)
}

/// The record of `deployment` from a summary file and the audit-log files (oldest first).
pub fn from_files(summary: &Path, deployment: &str, audit: &[PathBuf], format: Format) -> anyhow::Result<String> {
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(summary).with_context(|| format!("reading {}", summary.display()))?)
            .with_context(|| format!("{} is not JSON", summary.display()))?;
    // A replay summary holds `deployments`; an API summary is one deployment.
    let one = match v["deployments"].as_array() {
        Some(list) => list.iter().find(|d| d["deployment_id"] == deployment).cloned().with_context(|| {
            let ids: Vec<&str> = list.iter().filter_map(|d| d["deployment_id"].as_str()).collect();
            format!("no deployment `{deployment}` in {} (it has: {})", summary.display(), ids.join(", "))
        })?,
        None if v["deployment_id"] == deployment => v,
        None => bail!("{} is not a summary of deployment `{deployment}`", summary.display()),
    };
    let mut records = Vec::new();
    for f in audit {
        records.extend(crate::audit::read_records(f).with_context(|| format!("reading {}", f.display()))?);
    }
    Ok(format.render(&super::build(&one, &records)))
}
