//! `plantwire bench alarms`: an alarm flood against a running server over HTTPS — closed-loop
//! device publishers raise alarms, a WebSocket on domain `alarms` times raise-to-visible, then
//! one bulk acknowledgement of 1,000 visible alarms is timed; the server's RSS is sampled.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail};
use bytes::Bytes;
use futures_util::SinkExt;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use super::chat::{Http, next_json, random_token, rss_kib};
use super::{Latencies, percentiles};

/// Alarms acknowledged by the one bulk request.
pub const ACK_BATCH: usize = 1_000;

#[derive(Debug, Clone)]
pub struct AlarmBench {
    pub addr: SocketAddr,
    pub ca_file: std::path::PathBuf,
    /// A device API token; every publisher raises with it, each under its own sources.
    pub token: String,
    /// The `admin` password (a one-time one is replaced, as by `bench chat`).
    pub admin_password: String,
    pub devices: usize,
    /// Alarms each device raises.
    pub per_device: usize,
    pub server_pid: Option<u32>,
}

#[derive(Debug)]
pub struct AlarmResult {
    pub raised: usize,
    pub seconds: f64,
    pub per_second: f64,
    /// Raise request to its answer.
    pub raise: Latencies,
    /// Raise request sent to the entry seen on the WebSocket.
    pub visible: Latencies,
    pub seen: usize,
    pub ack_count: usize,
    pub ack_ms: f64,
    pub peak_rss_kib: Option<u64>,
}

type Sent = Arc<Mutex<HashMap<String, Instant>>>;

/// One device: raises `n` alarms on one keep-alive connection, each a new source; returns
/// (latencies µs, alarm ids).
async fn device(
    http: Arc<Http>,
    token: String,
    prefix: String,
    n: usize,
    sent: Sent,
) -> anyhow::Result<(Vec<u64>, Vec<u64>)> {
    let tls = http.connect().await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
    tokio::spawn(conn);
    let host = format!("localhost:{}", http.addr().port());
    let (mut lat, mut ids) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for i in 0..n {
        let source = format!("{prefix}-{i}");
        let body = json!({"source": source, "condition": "bench.high", "active": true,
            "priority": "high", "message": "alarm flood benchmark"});
        let req = Request::post("/api/v1/alarms")
            .header("host", &host)
            .header("authorization", format!("Bearer {token}"))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body.to_string())))?;
        let t = Instant::now();
        sent.lock()
            .map_err(|_| anyhow!("poisoned"))?
            .insert(source, t);
        sender.ready().await?;
        let res = sender.send_request(req).await?;
        let status = res.status().as_u16();
        let bytes = res.into_body().collect().await?.to_bytes();
        lat.push(t.elapsed().as_micros() as u64);
        if status != 201 {
            bail!(
                "raise answered {status}: {}",
                String::from_utf8_lossy(&bytes)
            );
        }
        let v: serde_json::Value = serde_json::from_slice(&bytes)?;
        ids.push(
            v["id"]
                .as_u64()
                .ok_or_else(|| anyhow!("raise answered no id: {v}"))?,
        );
    }
    Ok((lat, ids))
}

pub async fn run(b: &AlarmBench) -> anyhow::Result<AlarmResult> {
    let (http, admin) = Http::as_admin(b.addr, &b.ca_file, &b.admin_password).await?;

    // The watcher: a WebSocket on domain `alarms`, live from the head.
    let tls = http.connect().await?;
    let mut req = format!("wss://localhost:{}/api/v1/ws", b.addr.port()).into_client_request()?;
    req.headers_mut()
        .insert("authorization", format!("Bearer {admin}").parse()?);
    let (mut ws, _) = tokio_tungstenite::client_async(req, tls).await?;
    let hello = next_json(&mut ws).await?;
    let head = hello["head"]
        .as_u64()
        .ok_or_else(|| anyhow!("no hello: {hello}"))?;
    ws.send(Message::text(
        json!({"type": "subscribe", "since": head, "domains": ["alarms"]}).to_string(),
    ))
    .await?;
    loop {
        let v = next_json(&mut ws).await?;
        match v["type"].as_str() {
            Some("caught_up") => break,
            Some("error") => bail!("subscribe refused: {v}"),
            _ => {}
        }
    }

    let total = b.devices * b.per_device;
    let sent: Sent = Arc::new(Mutex::new(HashMap::with_capacity(total)));
    let watcher = {
        let sent = sent.clone();
        tokio::spawn(async move {
            let mut lat = Vec::with_capacity(total);
            while lat.len() < total {
                let v =
                    match tokio::time::timeout(Duration::from_secs(30), next_json(&mut ws)).await {
                        Ok(Ok(v)) => v,
                        _ => break,
                    };
                if v["type"] != "entry" || v["kind"] != "alarm.raise" {
                    continue;
                }
                let now = Instant::now();
                let source = v["body"]["alarm"]["source"].as_str().unwrap_or_default();
                let at = sent.lock().ok().and_then(|m| m.get(source).copied());
                if let Some(at) = at {
                    lat.push(now.saturating_duration_since(at).as_micros() as u64);
                }
            }
            lat
        })
    };

    // RSS sampled every 100 ms during the flood.
    let sampling = tokio_util::sync::CancellationToken::new();
    let sampler = {
        let (pid, stop) = (b.server_pid, sampling.clone());
        tokio::spawn(async move {
            let mut peak = pid.and_then(rss_kib);
            while !stop.is_cancelled() {
                tokio::select! {
                    () = stop.cancelled() => {}
                    () = tokio::time::sleep(Duration::from_millis(100)) => {}
                }
                peak = peak.max(pid.and_then(rss_kib));
            }
            peak
        })
    };

    let run_id = &random_token()[..6];
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(b.devices);
    for d in 0..b.devices {
        tasks.push(tokio::spawn(device(
            http.clone(),
            b.token.clone(),
            format!("bench-{run_id}-d{d}"),
            b.per_device,
            sent.clone(),
        )));
    }
    let (mut raise, mut ids) = (Vec::with_capacity(total), Vec::with_capacity(total));
    for t in tasks {
        let (l, i) = t.await.map_err(|e| anyhow!("device: {e}"))??;
        raise.extend(l);
        ids.extend(i);
    }
    let seconds = started.elapsed().as_secs_f64();
    let visible = watcher.await.map_err(|e| anyhow!("watcher: {e}"))?;
    sampling.cancel();
    let peak_rss_kib = sampler.await.map_err(|e| anyhow!("sampler: {e}"))?;

    let batch: Vec<u64> = ids.iter().take(ACK_BATCH).copied().collect();
    let t = Instant::now();
    let (s, v) = http
        .call(
            "POST",
            "/api/v1/alarms/ack",
            Some(&admin),
            json!({"ids": batch}),
        )
        .await?;
    let ack_ms = t.elapsed().as_secs_f64() * 1e3;
    if s != 200 {
        bail!("bulk ack answered {s}: {v}");
    }
    Ok(AlarmResult {
        raised: raise.len(),
        seconds,
        per_second: raise.len() as f64 / seconds,
        raise: percentiles(raise),
        seen: visible.len(),
        visible: percentiles(visible),
        ack_count: v["acked"].as_u64().unwrap_or_default() as usize,
        ack_ms,
        peak_rss_kib,
    })
}
