//! The server's counters and their Prometheus text (`GET /metrics`):
//! requests by endpoint and status, prompt / cached / generated tokens and
//! the time spent on them, aggregate tokens per second over the last ten
//! seconds, batched decode steps and their sizes, queue depth, busy slots,
//! resident and hibernated sessions (hibernations, restores, rebuilds),
//! KV cache use per device and, with a draft model, speculative decoding's
//! drafted and accepted tokens, verification passes and acceptance rate.

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tessera_core::speculative::{SpecCounters, SpecStats};

use crate::job::Outcome;
use crate::slots::Snapshot;

/// The window of the tokens-per-second gauges.
const WINDOW_SECS: u64 = 10;

/// Where the KV cache of one session lives: per device, bytes per token.
#[derive(Clone, Debug, Default)]
pub struct KvLayout {
    /// Device name and the bytes one token takes there (keys and values of
    /// the layers whose attention runs on it).
    pub devices: Vec<(String, usize)>,
    /// Tokens per session.
    pub n_ctx: usize,
}

impl KvLayout {
    /// The layout of `model`'s sessions under `params`.
    pub fn of(
        model: &tessera_core::Model,
        params: &tessera_core::SessionParams,
        n_ctx: usize,
    ) -> KvLayout {
        let hp = model.hparams();
        let row = |t, n| tessera_core::kv::kv_row_bytes(t, n).unwrap_or(0);
        let per_layer =
            row(params.type_k, hp.n_embd_k_gqa()) + row(params.type_v, hp.n_embd_v_gqa());
        let devices = model
            .backends()
            .iter()
            .enumerate()
            .map(|(d, b)| {
                let layers = model.layer_devices().iter().filter(|&&x| x == d).count();
                (b.info().name, layers * per_layer)
            })
            .filter(|(_, bytes)| *bytes > 0)
            .collect();
        KvLayout { devices, n_ctx }
    }
}

/// The counters, shared by the handlers and the slots.
#[derive(Debug)]
pub struct Metrics {
    started: Instant,
    requests: Mutex<BTreeMap<(&'static str, u16), u64>>,
    prompt_tokens: AtomicU64,
    cached_tokens: AtomicU64,
    completion_tokens: AtomicU64,
    prompt_micros: AtomicU64,
    gen_micros: AtomicU64,
    /// Per second since start: (prompt tokens evaluated, tokens generated).
    recent: Mutex<VecDeque<(u64, u64, u64)>>,
    /// Tokens each slot's session holds now.
    slot_tokens: Vec<AtomicUsize>,
    hibernations: AtomicU64,
    restores: AtomicU64,
    rebuilds: AtomicU64,
    kv: KvLayout,
    /// Batched decode steps, the tokens they decoded, the last one's size.
    decode_steps: AtomicU64,
    decode_rows: AtomicU64,
    last_batch: AtomicUsize,
    /// Speculative decoding's counts, summed over requests; `None`
    /// without a draft model.
    spec: Option<SpecCounters>,
}

impl Metrics {
    /// Counters for `n_slots` slots whose sessions have `kv`'s layout.
    pub fn new(n_slots: usize, kv: KvLayout) -> Metrics {
        Metrics {
            started: Instant::now(),
            requests: Mutex::default(),
            prompt_tokens: AtomicU64::new(0),
            cached_tokens: AtomicU64::new(0),
            completion_tokens: AtomicU64::new(0),
            prompt_micros: AtomicU64::new(0),
            gen_micros: AtomicU64::new(0),
            recent: Mutex::default(),
            slot_tokens: (0..n_slots).map(|_| AtomicUsize::new(0)).collect(),
            hibernations: AtomicU64::new(0),
            restores: AtomicU64::new(0),
            rebuilds: AtomicU64::new(0),
            kv,
            decode_steps: AtomicU64::new(0),
            decode_rows: AtomicU64::new(0),
            last_batch: AtomicUsize::new(0),
            spec: None,
        }
    }

    /// With a draft model: speculative decoding's counters are kept and shown.
    pub fn with_draft(mut self) -> Metrics {
        self.spec = Some(SpecCounters::new());
        self
    }

    /// A request that ran with a draft ended, having done `st`.
    pub fn speculated(&self, st: &SpecStats) {
        if let Some(c) = &self.spec {
            c.record(st);
        }
    }

    /// Speculative decoding's counts so far (`None` without a draft).
    pub fn speculation(&self) -> Option<SpecStats> {
        self.spec.as_ref().map(SpecCounters::snapshot)
    }

    /// One answered request.
    pub fn request(&self, endpoint: &'static str, status: u16) {
        let mut r = self.requests.lock().unwrap_or_else(|e| e.into_inner());
        *r.entry((endpoint, status)).or_default() += 1;
    }

    /// `n` prompt tokens evaluated, or `n` tokens generated, now.
    fn add_recent(&self, prompt: u64, gen: u64) {
        let sec = self.started.elapsed().as_secs();
        let mut r = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        match r.back_mut() {
            Some(last) if last.0 == sec => {
                last.1 += prompt;
                last.2 += gen;
            }
            _ => r.push_back((sec, prompt, gen)),
        }
        while r.front().is_some_and(|f| f.0 + WINDOW_SECS < sec) {
            r.pop_front();
        }
    }

    /// A slot evaluated `n` prompt tokens.
    pub fn prompt_evaluated(&self, n: usize) {
        self.add_recent(n as u64, 0);
    }

    /// A slot's state was written to a hibernation file.
    pub fn hibernated(&self) {
        self.hibernations.fetch_add(1, Ordering::Relaxed);
    }

    /// A hibernated state was restored into a slot, from its file or
    /// (`rebuilt`) by evaluating its tokens after the file was refused.
    pub fn restored(&self, rebuilt: bool) {
        let c = if rebuilt {
            &self.rebuilds
        } else {
            &self.restores
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// A slot generated a token.
    pub fn token_generated(&self) {
        self.add_recent(0, 1);
    }

    /// The engine ran a decode step over `n` requests at once.
    pub fn decode_step(&self, n: usize) {
        self.decode_steps.fetch_add(1, Ordering::Relaxed);
        self.decode_rows.fetch_add(n as u64, Ordering::Relaxed);
        self.last_batch.store(n, Ordering::Relaxed);
    }

    /// Decode steps so far and their average batch size.
    pub fn batch_sizes(&self) -> (u64, f64) {
        let steps = self.decode_steps.load(Ordering::Relaxed);
        let rows = self.decode_rows.load(Ordering::Relaxed);
        (steps, rows as f64 / steps.max(1) as f64)
    }

    /// A slot's session now holds `n` tokens.
    pub fn set_slot_tokens(&self, slot: usize, n: usize) {
        if let Some(s) = self.slot_tokens.get(slot) {
            s.store(n, Ordering::Relaxed);
        }
    }

    /// A generation ended.
    pub fn finished(&self, o: &Outcome) {
        let add = |c: &AtomicU64, v: u64| c.fetch_add(v, Ordering::Relaxed);
        add(&self.prompt_tokens, o.prompt_tokens as u64);
        add(&self.cached_tokens, o.cached_tokens as u64);
        add(&self.completion_tokens, o.completion_tokens as u64);
        add(&self.prompt_micros, o.prompt_time.as_micros() as u64);
        add(&self.gen_micros, o.gen_time.as_micros() as u64);
    }

    /// (prompt, generated) tokens per second over the last ten seconds
    /// (or since start, when that is shorter).
    pub fn rates(&self) -> (f64, f64) {
        let now = self.started.elapsed();
        let sec = now.as_secs();
        let r = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        let (p, g) = r
            .iter()
            .filter(|b| b.0 + WINDOW_SECS > sec)
            .fold((0, 0), |acc, b| (acc.0 + b.1, acc.1 + b.2));
        let span = now
            .min(Duration::from_secs(WINDOW_SECS))
            .as_secs_f64()
            .max(1e-3);
        (p as f64 / span, g as f64 / span)
    }

    /// The Prometheus text exposition.
    pub fn render(&self, snap: &Snapshot) -> String {
        let mut x = Exposition::default();
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed) as f64;
        let requests: Vec<_> = self
            .requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(&(ep, status), &n)| (format!("endpoint=\"{ep}\",status=\"{status}\""), n as f64))
            .collect();
        x.labelled(
            "tessera_requests_total",
            COUNTER,
            "Requests answered, by endpoint and HTTP status.",
            &requests,
        );
        x.one(
            "tessera_prompt_tokens_total",
            COUNTER,
            "Prompt tokens of finished requests (cached ones included).",
            get(&self.prompt_tokens),
        );
        x.one(
            "tessera_prompt_tokens_cached_total",
            COUNTER,
            "Prompt tokens reused from a slot's KV cache.",
            get(&self.cached_tokens),
        );
        x.one(
            "tessera_completion_tokens_total",
            COUNTER,
            "Tokens generated by finished requests.",
            get(&self.completion_tokens),
        );
        x.one(
            "tessera_prompt_seconds_total",
            COUNTER,
            "Time slots spent evaluating prompts.",
            get(&self.prompt_micros) / 1e6,
        );
        x.one(
            "tessera_generation_seconds_total",
            COUNTER,
            "Time slots spent generating.",
            get(&self.gen_micros) / 1e6,
        );
        let (prompt_rate, gen_rate) = self.rates();
        x.one(
            "tessera_tokens_per_second",
            GAUGE,
            "Tokens generated per second, all slots together, over the last 10 s.",
            gen_rate,
        );
        x.one(
            "tessera_prompt_tokens_per_second",
            GAUGE,
            "Prompt tokens evaluated per second, all slots together, over the last 10 s.",
            prompt_rate,
        );
        let (steps, avg) = self.batch_sizes();
        x.one(
            "tessera_decode_steps_total",
            COUNTER,
            "Decode steps run (each evaluates the next token of every active request at once).",
            steps as f64,
        );
        x.one(
            "tessera_decode_tokens_total",
            COUNTER,
            "Tokens evaluated by decode steps (their batch sizes summed).",
            get(&self.decode_rows),
        );
        x.one(
            "tessera_decode_batch_size_average",
            GAUGE,
            "Requests per decode step, on average since start.",
            avg,
        );
        x.one(
            "tessera_decode_batch_size",
            GAUGE,
            "Requests in the last decode step.",
            self.last_batch.load(Ordering::Relaxed) as f64,
        );
        if let Some(st) = self.speculation() {
            x.one(
                "tessera_draft_tokens_total",
                COUNTER,
                "Draft tokens sent to the target for verification (finished requests).",
                st.n_drafted as f64,
            );
            x.one(
                "tessera_draft_tokens_accepted_total",
                COUNTER,
                "Draft tokens the target's sampler agreed with (finished requests).",
                st.n_accepted as f64,
            );
            x.one(
                "tessera_draft_acceptance_rate",
                GAUGE,
                "Accepted / drafted tokens since start (0 before any draft).",
                st.acceptance_rate(),
            );
            x.one(
                "tessera_draft_verify_passes_total",
                COUNTER,
                "Requests' verification passes: decode steps in which a request had guesses checked.",
                st.n_target_passes as f64,
            );
            x.one(
                "tessera_draft_steps_total",
                COUNTER,
                "Draft model evaluations (catching up with a prompt, then one per guess).",
                st.n_draft_steps as f64,
            );
            x.one(
                "tessera_draft_seconds_total",
                COUNTER,
                "Time in the draft model.",
                st.draft_time.as_secs_f64(),
            );
        }
        x.one(
            "tessera_queue_depth",
            GAUGE,
            "Requests waiting for a slot.",
            snap.queue_depth as f64,
        );
        x.one(
            "tessera_slots_total",
            GAUGE,
            "Slots (sessions that serve requests at once).",
            snap.busy.len() as f64,
        );
        x.one(
            "tessera_slots_busy",
            GAUGE,
            "Slots serving a request.",
            snap.busy.iter().filter(|&&b| b).count() as f64,
        );

        let held: Vec<usize> = self
            .slot_tokens
            .iter()
            .map(|t| t.load(Ordering::Relaxed))
            .collect();
        let resident = held.iter().filter(|&&n| n > 0).count();
        x.one(
            "tessera_sessions_resident",
            GAUGE,
            "Slots whose KV cache holds tokens (reusable by a request with the same prefix).",
            resident as f64,
        );
        x.one(
            "tessera_sessions_hibernated",
            GAUGE,
            "Conversations whose KV cache is hibernated to disk (--hibernate-dir).",
            snap.hibernated as f64,
        );
        x.one(
            "tessera_hibernations_total",
            COUNTER,
            "Slot states written to hibernation files.",
            get(&self.hibernations),
        );
        x.one(
            "tessera_restores_total",
            COUNTER,
            "Hibernated states read back into a slot (nothing evaluated).",
            get(&self.restores),
        );
        x.one(
            "tessera_restore_rebuilds_total",
            COUNTER,
            "Hibernated states rebuilt from their tokens (the file was refused).",
            get(&self.rebuilds),
        );
        let per_slot: Vec<_> = held
            .iter()
            .enumerate()
            .map(|(i, &n)| (format!("slot=\"{i}\""), n as f64))
            .collect();
        x.labelled(
            "tessera_slot_tokens",
            GAUGE,
            "Tokens held by each slot's KV cache.",
            &per_slot,
        );

        // KV cache per device: every slot's session has the same layout.
        let used: usize = held.iter().sum();
        let cells = self.kv.n_ctx * held.len();
        let per_device = |f: &dyn Fn(usize) -> f64| -> Vec<(String, f64)> {
            self.kv
                .devices
                .iter()
                .map(|(d, per_token)| (format!("device=\"{d}\""), f(*per_token)))
                .collect()
        };
        x.labelled(
            "tessera_kv_cache_bytes",
            GAUGE,
            "KV cache allocated on each device, all slots.",
            &per_device(&|b| (b * cells) as f64),
        );
        x.labelled(
            "tessera_kv_cache_used_bytes",
            GAUGE,
            "KV cache holding tokens on each device, all slots.",
            &per_device(&|b| (b * used) as f64),
        );
        x.labelled(
            "tessera_kv_cache_usage_ratio",
            GAUGE,
            "Share of the KV cells in use on each device.",
            &per_device(&|_| used as f64 / cells.max(1) as f64),
        );
        x.one(
            "tessera_uptime_seconds",
            GAUGE,
            "Seconds since the server started.",
            self.started.elapsed().as_secs_f64(),
        );
        x.text
    }
}

const COUNTER: &str = "counter";
const GAUGE: &str = "gauge";

/// Prometheus' text format, one metric at a time.
#[derive(Default)]
struct Exposition {
    text: String,
}

impl Exposition {
    /// A metric with one sample per label set (`key="value",…`).
    fn labelled(&mut self, name: &str, kind: &str, help: &str, samples: &[(String, f64)]) {
        let _ = writeln!(self.text, "# HELP {name} {help}");
        let _ = writeln!(self.text, "# TYPE {name} {kind}");
        for (labels, v) in samples {
            let _ = writeln!(self.text, "{name}{{{labels}}} {v}");
        }
    }

    /// A metric with one unlabelled sample.
    fn one(&mut self, name: &str, kind: &str, help: &str, v: f64) {
        let _ = writeln!(self.text, "# HELP {name} {help}");
        let _ = writeln!(self.text, "# TYPE {name} {kind}");
        let _ = writeln!(self.text, "{name} {v}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let m = Metrics::new(
            2,
            KvLayout {
                devices: vec![("cpu".into(), 100)],
                n_ctx: 10,
            },
        );
        m.request("chat", 200);
        m.request("chat", 200);
        m.request("chat", 400);
        m.set_slot_tokens(1, 4);
        m.token_generated();
        m.decode_step(3);
        m.decode_step(1);
        let text = m.render(&Snapshot {
            queue_depth: 3,
            busy: vec![true, false],
            hibernated: 2,
        });
        for line in [
            "tessera_requests_total{endpoint=\"chat\",status=\"200\"} 2",
            "tessera_requests_total{endpoint=\"chat\",status=\"400\"} 1",
            "tessera_queue_depth 3",
            "tessera_slots_busy 1",
            "tessera_sessions_resident 1",
            "tessera_sessions_hibernated 2",
            "tessera_slot_tokens{slot=\"1\"} 4",
            "tessera_kv_cache_bytes{device=\"cpu\"} 2000",
            "tessera_kv_cache_used_bytes{device=\"cpu\"} 400",
            "tessera_kv_cache_usage_ratio{device=\"cpu\"} 0.2",
            "tessera_decode_steps_total 2",
            "tessera_decode_tokens_total 4",
            "tessera_decode_batch_size_average 2",
            "tessera_decode_batch_size 1",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing in\n{text}");
        }
        assert!(m.rates().1 > 0.0);
        assert!(
            !text.contains("tessera_draft"),
            "no draft, no draft metrics"
        );
    }

    #[test]
    fn renders_speculation_with_a_draft() {
        let m = Metrics::new(1, KvLayout::default()).with_draft();
        let st = SpecStats {
            n_drafted: 8,
            n_accepted: 6,
            n_target_passes: 2,
            n_draft_steps: 9,
            ..SpecStats::default()
        };
        m.speculated(&st);
        m.speculated(&st);
        let text = m.render(&Snapshot {
            queue_depth: 0,
            busy: vec![false],
            hibernated: 0,
        });
        for line in [
            "tessera_draft_tokens_total 16",
            "tessera_draft_tokens_accepted_total 12",
            "tessera_draft_acceptance_rate 0.75",
            "tessera_draft_verify_passes_total 4",
            "tessera_draft_steps_total 18",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing in\n{text}");
        }
    }
}
